use entity::Role;
use uuid::Uuid;

/// The tenant of configs created without one, and of MEMBER tokens created without one.
pub const DEFAULT_TENANT: &str = "default";

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name; the audit trail's `actor`.
    pub name: String,
    pub role: Role,
    /// A MEMBER's tenant. ADMINs act across tenants.
    pub tenant: Option<String>,
    /// The stored token's id; None for the break-glass KEYWARD_ADMIN_TOKEN.
    pub token_id: Option<Uuid>,
}

impl Principal {
    pub fn break_glass_admin() -> Self {
        Self {
            name: "admin".into(),
            role: Role::Admin,
            tenant: None,
            token_id: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The only tenant this principal may see, or None for all of them.
    pub fn tenant_scope(&self) -> Option<&str> {
        match self.role {
            Role::Admin => None,
            Role::Member => Some(self.tenant.as_deref().unwrap_or(DEFAULT_TENANT)),
        }
    }

    /// Whether a record of `tenant` is visible to this principal.
    pub fn can_see(&self, tenant: &str) -> bool {
        self.tenant_scope().is_none_or(|mine| mine == tenant)
    }
}

/// Facts about the HTTP request, for the audit trail.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}
