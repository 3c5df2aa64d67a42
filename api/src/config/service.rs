use chrono::Utc;
use entity::{AuditAction, SealedJson, config, config_tag};
use sea_orm::sea_query::extension::sqlite::SqliteExpr;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::auth::{Principal, RequestMeta};
use crate::crypto::{self, Keyring, Plaintext, SealedBoxKeys, SealedDocument};
use crate::error::AppError;
use crate::keys::TenantKeys;

const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 4000;
const MAX_TAGS: usize = 50;
const MAX_TAG: usize = 100;
const MAX_TENANT: usize = 100;

/// What the seal step needs: the tenant rings and the sealed-box keys.
pub struct Sealing<'a> {
    pub keys: &'a TenantKeys,
    pub sealed_keys: &'a SealedBoxKeys,
    pub max_bytes: usize,
}

pub struct NewConfig {
    pub name: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub config_data: Value,
    pub tenant: Option<String>,
}

#[derive(Default)]
pub struct ConfigChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub config_data: Option<Value>,
    pub expected_version: Option<i32>,
}

#[derive(Default)]
pub struct ConfigFilter {
    pub search: Option<String>,
    pub tag: Option<String>,
}

pub async fn create(
    db: &DatabaseConnection,
    sealing: &Sealing<'_>,
    by: &Principal,
    meta: &RequestMeta,
    new: NewConfig,
) -> Result<config::Model, AppError> {
    let name = check_name(&new.name)?;
    let description = new.description.map(|d| check_description(&d)).transpose()?;
    let tags = check_tags(new.tags.unwrap_or_default())?;
    let tenant = match by.tenant_scope() {
        Some(own) => own.to_owned(),
        None => check_tenant(new.tenant.as_deref().unwrap_or(crate::auth::DEFAULT_TENANT))?,
    };
    let ring = sealing.keys.writing(db, &tenant).await?;
    let sealed = seal(sealing, &ring, new.config_data, None)?;
    let detail = ingest_detail(&sealed, serde_json::json!({}));
    let now = Utc::now();
    let id = Uuid::now_v7();
    let txn = db.begin().await?;
    let row = config::ActiveModel {
        id: Set(id),
        name: Set(name),
        description: Set(description),
        tenant: Set(tenant.clone()),
        tags: Set(Value::from(tags.clone())),
        config_data: Set(SealedJson::new_unchecked(sealed.doc)),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    // A new id has no tags to replace: one statement less per create.
    insert_tags(&txn, id, &tags).await?;
    AuditEntry::new(AuditAction::ConfigCreate, by, meta)
        .tenant(Some(tenant))
        .config(id)
        .detail(detail)
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(row)
}

/// The config if it exists and the principal may see it. Another tenant's config is
/// indistinguishable from a missing one.
pub async fn find_visible(
    db: &impl ConnectionTrait,
    by: &Principal,
    id: Uuid,
) -> Result<Option<config::Model>, AppError> {
    let row = config::Entity::find_by_id(id).one(db).await?;
    Ok(row.filter(|c| by.can_see(&c.tenant)))
}

/// `config(decrypt: true)`: ADMIN only; the audit row commits before plaintext exists.
pub async fn read_decrypted(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    by: &Principal,
    meta: &RequestMeta,
    id: Option<Uuid>,
    reason: Option<String>,
) -> Result<Option<(config::Model, Plaintext<Value>)>, AppError> {
    // U+0000 is dropped: PostgreSQL cannot store it in the audit detail.
    let reason = reason.map(|r| {
        r.chars()
            .filter(|c| *c != '\0')
            .take(500)
            .collect::<String>()
    });
    let detail = serde_json::json!({ "reason": reason });
    if !by.is_admin() {
        let mut entry = AuditEntry::new(AuditAction::ConfigDecrypt, by, meta)
            .success(false)
            .detail(
                serde_json::json!({ "reason": reason, "refused": "decrypt needs the ADMIN role" }),
            );
        if let Some(id) = id {
            entry = entry.config(id);
        }
        entry.record(db).await?;
        crate::telemetry::metrics::record_decrypt(false);
        return Err(AppError::Forbidden("decrypt: true needs the ADMIN role"));
    }
    let Some(id) = id else { return Ok(None) };
    let txn = db.begin().await?;
    let Some(row) = find_visible(&txn, by, id).await? else {
        return Ok(None);
    };
    let opened = keys
        .open(&txn, &row.tenant, row.config_data.as_value())
        .await;
    let entry = AuditEntry::new(AuditAction::ConfigDecrypt, by, meta)
        .tenant(Some(row.tenant.clone()))
        .config(id);
    match opened {
        Ok(plain) => {
            entry.detail(detail).record(&txn).await?;
            txn.commit()
                .await
                .map_err(|e| AppError::Unavailable(Box::new(e)))?;
            crate::telemetry::metrics::record_decrypt(true);
            Ok(Some((row, plain)))
        }
        Err(AppError::DecryptionFailed { path }) => {
            let detail = serde_json::json!({ "reason": reason, "failedPath": path });
            entry.success(false).detail(detail).record(&txn).await?;
            txn.commit().await?;
            Err(AppError::DecryptionFailed { path })
        }
        Err(other) => Err(other),
    }
}

pub async fn update(
    db: &DatabaseConnection,
    sealing: &Sealing<'_>,
    by: &Principal,
    meta: &RequestMeta,
    id: Option<Uuid>,
    changes: ConfigChanges,
) -> Result<config::Model, AppError> {
    let id = id.ok_or(AppError::NotFound("config"))?;
    let name = changes.name.as_deref().map(check_name).transpose()?;
    let description = changes
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    let tags = changes.tags.map(check_tags).transpose()?;
    // With tenant keys, the tenant's ring is fetched before the transaction: making a data
    // key must commit on its own. A config's tenant never changes.
    let ring = match &changes.config_data {
        None => None,
        Some(_) if !sealing.keys.enabled() => Some(sealing.keys.master().clone()),
        Some(_) => match find_visible(db, by, id).await? {
            Some(row) => Some(sealing.keys.writing(db, &row.tenant).await?),
            None => return Err(AppError::NotFound("config")),
        },
    };

    let txn = db.begin().await?;
    // Locked until commit (PostgreSQL; SQLite's single writer serialises anyway): racing
    // updates without expectedVersion apply one after the other instead of conflicting.
    let mut locked = config::Entity::find_by_id(id);
    if txn.get_database_backend() == DbBackend::Postgres {
        locked = locked.lock_exclusive();
    }
    let current = locked
        .one(&txn)
        .await?
        .filter(|c| by.can_see(&c.tenant))
        .ok_or(AppError::NotFound("config"))?;
    if let Some(expected) = changes.expected_version
        && expected != current.version
    {
        return Err(version_conflict(expected, current.version));
    }
    // Sealed against the locked row: its secrets sent back unchanged are kept as stored.
    let sealed = match (changes.config_data, &ring) {
        (Some(doc), Some(ring)) => Some(seal(
            sealing,
            ring,
            doc,
            Some(current.config_data.as_value()),
        )?),
        _ => None,
    };
    let mut update = config::Entity::update_many()
        .col_expr(
            config::Column::Version,
            Expr::col(config::Column::Version).add(1),
        )
        .col_expr(config::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(name) = name {
        update = update.col_expr(config::Column::Name, Expr::value(name));
    }
    if let Some(description) = description {
        update = update.col_expr(config::Column::Description, Expr::value(description));
    }
    if let Some(tags) = &tags {
        update = update.col_expr(config::Column::Tags, Expr::value(Value::from(tags.clone())));
    }
    let mut detail = serde_json::json!({ "version": current.version + 1 });
    if let Some(sealed) = sealed {
        detail = ingest_detail(&sealed, detail);
        update = update.col_expr(config::Column::ConfigData, Expr::value(sealed.doc));
    }
    // The version in the WHERE clause makes a concurrent writer lose cleanly: exactly one
    // of several updates from the same version succeeds.
    let result = update
        .filter(config::Column::Id.eq(id))
        .filter(config::Column::Version.eq(current.version))
        .exec(&txn)
        .await?;
    if result.rows_affected == 0 {
        return Err(version_conflict(
            changes.expected_version.unwrap_or(current.version),
            current.version + 1,
        ));
    }
    if let Some(tags) = &tags {
        replace_tags(&txn, id, tags).await?;
    }
    AuditEntry::new(AuditAction::ConfigUpdate, by, meta)
        .tenant(Some(current.tenant.clone()))
        .config(id)
        .detail(detail)
        .record(&txn)
        .await?;
    let row = config::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound("config"))?;
    txn.commit().await?;
    Ok(row)
}

fn version_conflict(expected: i32, actual: i32) -> AppError {
    AppError::Conflict(format!(
        "the config changed since version {expected} (now at least {actual}); reload it and apply your change again"
    ))
}

pub async fn delete(
    db: &DatabaseConnection,
    by: &Principal,
    meta: &RequestMeta,
    id: Option<Uuid>,
) -> Result<bool, AppError> {
    let id = id.ok_or(AppError::NotFound("config"))?;
    let txn = db.begin().await?;
    let row = find_visible(&txn, by, id)
        .await?
        .ok_or(AppError::NotFound("config"))?;
    config::Entity::delete_by_id(id).exec(&txn).await?;
    AuditEntry::new(AuditAction::ConfigDelete, by, meta)
        .tenant(Some(row.tenant))
        .config(id)
        .detail(serde_json::json!({ "name": row.name, "version": row.version }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// Newest first, keyset-paginated on the (time-ordered) id. The total of an unfiltered
/// list comes from the maintained counts (`count`), not from counting.
pub async fn list(
    db: &DatabaseConnection,
    by: &Principal,
    filter: &ConfigFilter,
    first: u64,
    after: Option<Uuid>,
    count: bool,
) -> Result<(Vec<config::Model>, bool, u64), AppError> {
    let unfiltered =
        filter.tag.is_none() && filter.search.as_deref().is_none_or(|s| s.trim().is_empty());
    let mut query = config::Entity::find();
    if let Some(tenant) = by.tenant_scope() {
        query = query.filter(config::Column::Tenant.eq(tenant));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        check_no_nul("search", search)?;
        let name = Expr::col(config::Column::Name);
        query = query.filter(match db.get_database_backend() {
            // SQLite's LOWER and LIKE fold ASCII letters only: match case variants explicitly.
            DbBackend::Sqlite => name.glob(glob_any_case(search)),
            _ => {
                let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
                Expr::expr(Func::lower(name)).like(LikeExpr::new(pattern).escape('\\'))
            }
        });
    }
    if let Some(tag) = filter.tag.as_deref() {
        check_no_nul("tag", tag)?;
        query = query.filter(
            config::Column::Id.in_subquery(
                Query::select()
                    .column(config_tag::Column::ConfigId)
                    .from(config_tag::Entity)
                    .and_where(config_tag::Column::Tag.eq(tag))
                    .to_owned(),
            ),
        );
    }
    let counting = count && !unfiltered;
    let (rows, has_next, total) =
        crate::pagination::fetch_counting(db, query, config::Column::Id, first, after, counting)
            .await?;
    let total = if count && unfiltered {
        super::count::total(db, by.tenant_scope()).await?
    } else {
        total
    };
    Ok((rows, has_next, total))
}

/// An audit detail with where a write's secrets are and how they arrived.
fn ingest_detail(sealed: &SealedDocument, mut detail: Value) -> Value {
    detail["sensitivePaths"] = Value::from(sealed.paths.clone());
    detail["arrivedSealed"] = Value::from(sealed.arrived_sealed.clone());
    detail["arrivedEncrypted"] = Value::from(sealed.arrived_encrypted.clone());
    detail
}

fn seal(
    sealing: &Sealing<'_>,
    ring: &Keyring,
    doc: Value,
    previous: Option<&Value>,
) -> Result<SealedDocument, AppError> {
    if !doc.is_object() {
        return Err(AppError::bad_input("configData must be a JSON object"));
    }
    // Measured on the compact form, which is what the store holds.
    let size = serde_json::to_vec(&doc)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > sealing.max_bytes {
        return Err(AppError::bad_input(format!(
            "configData is {size} bytes; the limit is {}",
            sealing.max_bytes
        )));
    }
    let sealed = crypto::reseal_document(doc, previous, ring, sealing.sealed_keys)?;
    if let Some(path) = crypto::nul_path(&sealed.doc) {
        return Err(AppError::bad_input(format!(
            "configData.{path} contains a NUL character (U+0000), which can only be stored encrypted"
        )));
    }
    Ok(sealed)
}

async fn replace_tags(
    db: &impl ConnectionTrait,
    id: Uuid,
    tags: &[String],
) -> Result<(), AppError> {
    config_tag::Entity::delete_many()
        .filter(config_tag::Column::ConfigId.eq(id))
        .exec(db)
        .await?;
    insert_tags(db, id, tags).await
}

async fn insert_tags(db: &impl ConnectionTrait, id: Uuid, tags: &[String]) -> Result<(), AppError> {
    if !tags.is_empty() {
        config_tag::Entity::insert_many(tags.iter().map(|tag| config_tag::ActiveModel {
            config_id: Set(id),
            tag: Set(tag.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A GLOB pattern matching `search` anywhere, in any letter case: each letter becomes a
/// class of its single-character case variants (`École` → `*[Éé][Cc][Oo][Ll][Ee]*`), and
/// GLOB's own wildcards are taken literally.
fn glob_any_case(search: &str) -> String {
    let mut out = String::from("*");
    for c in search.chars() {
        let mut variants = vec![c];
        for mapped in [
            c.to_lowercase().collect::<Vec<_>>(),
            c.to_uppercase().collect(),
        ] {
            if let [single] = mapped[..]
                && !variants.contains(&single)
            {
                variants.push(single);
            }
        }
        match c {
            '*' | '?' | '[' => out.extend(['[', c, ']']),
            _ if variants.len() > 1 => {
                out.push('[');
                out.extend(variants);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out.push('*');
    out
}

/// PostgreSQL's text and JSONB cannot hold U+0000; refusing it on every store keeps them alike.
pub fn check_no_nul(what: &str, s: &str) -> Result<(), AppError> {
    if s.contains('\0') {
        return Err(AppError::bad_input(format!(
            "{what} must not contain a NUL character (U+0000)"
        )));
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<String, AppError> {
    check_no_nul("name", name)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(AppError::bad_input(format!(
            "name must be 1 to {MAX_NAME} characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_description(description: &str) -> Result<String, AppError> {
    check_no_nul("description", description)?;
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(AppError::bad_input(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(description.to_owned())
}

/// Tags: trimmed, non-empty, at most 100 characters each and 50 in all; duplicates dropped.
fn check_tags(tags: Vec<String>) -> Result<Vec<String>, AppError> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::bad_input(format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        check_no_nul("a tag", &tag)?;
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG {
            return Err(AppError::bad_input(format!(
                "each tag must be 1 to {MAX_TAG} characters"
            )));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    Ok(out)
}

/// Tenants are identifiers: letters, digits, `.`, `_`, `-`; at most 100 characters.
pub fn check_tenant(tenant: &str) -> Result<String, AppError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(AppError::bad_input(format!(
            "tenant must be 1 to {MAX_TENANT} letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(tenant.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_and_tenants_are_checked() {
        assert!(check_name("  ").is_err());
        assert!(check_name(&"x".repeat(201)).is_err());
        assert_eq!(check_name(" prod ").unwrap(), "prod");
        assert_eq!(
            check_tags(vec!["a".into(), " a ".into(), "b".into()]).unwrap(),
            ["a", "b"]
        );
        assert!(check_tags(vec![String::new()]).is_err());
        assert!(check_tenant("acme-eu.1").is_ok());
        assert!(check_tenant("acme eu").is_err());
        assert!(check_tenant("").is_err());
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn glob_patterns_fold_case_and_keep_wildcards_literal() {
        assert_eq!(glob_any_case("École"), "*[Éé][cC][oO][lL][eE]*");
        assert_eq!(glob_any_case("a*?[]%_1 "), "*[aA][*][?][[]]%_1 *");
        // ß upper-cases to two letters ("SS"): only single-character variants are used.
        assert_eq!(glob_any_case("ß"), "*ß*");
        assert_eq!(glob_any_case("ẞ"), "*[ẞß]*");
    }

    #[test]
    fn nul_characters_are_refused_in_names_descriptions_and_tags() {
        assert!(check_name("a\0b").is_err());
        assert!(check_description("a\0b").is_err());
        assert!(check_tags(vec!["a\0".into()]).is_err());
    }
}
