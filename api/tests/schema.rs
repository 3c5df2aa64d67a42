//! The checked-in `api/schema.graphql` is the schema: every API change shows in review.

use std::path::Path;

#[test]
fn the_checked_in_schema_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let checked_in = std::fs::read_to_string(&path).expect("api/schema.graphql exists");
    let actual = keyward::schema::sdl();
    assert!(
        checked_in == actual,
        "api/schema.graphql is out of date: run `cargo run -p keyward -- schema > api/schema.graphql` and review the diff"
    );
}

#[test]
fn the_schema_has_the_contract_surface() {
    let sdl = keyward::schema::sdl();
    for needle in [
        "config(\t\tid: ID!,\t\tdecrypt: Boolean = false,",
        "configs(first: Int = 20, after: String, search: String, tag: String): ConfigConnection!",
        "session(id: ID!): Session",
        "sessions(first: Int = 20, after: String, configId: ID, status: SessionStatus): SessionConnection!",
        "encryptionKey: PublicEncryptionKey!",
        "me: Principal!",
        "apiTokens: [ApiToken!]!",
        "createConfig(input: CreateConfigInput!): Config!",
        "updateConfig(id: ID!, input: UpdateConfigInput!): Config!",
        "deleteConfig(id: ID!): Boolean!",
        "createSession(input: CreateSessionInput!): Session!",
        "sendMessage(sessionId: ID!, content: String!): Message!",
        "closeSession(id: ID!): Session!",
        "deleteSession(id: ID!): Boolean!",
        "createApiToken(input: CreateApiTokenInput!): CreatedApiToken!",
        "revokeApiToken(id: ID!): Boolean!",
        "rotateEncryptionKey: KeyRotation!",
        "streamMessage(sessionId: ID!, content: String!): MessageChunk!",
        "enum SessionStatus {\n\tACTIVE\n\tCLOSED\n\tFAILED\n}",
        "enum Role {\n\tADMIN\n\tMEMBER\n}",
        "scalar JSON",
        "scalar DateTime",
    ] {
        assert!(sdl.contains(needle), "the schema lacks `{needle}`");
    }
    assert!(
        sdl.contains("auditEvents(first: Int = 50, after: String, configId: ID, action: String")
    );
}
