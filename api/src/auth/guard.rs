use async_graphql::{Context, Guard, Result};

use super::Principal;
use crate::error::AppError;

/// Allows ADMIN principals only; everyone else gets FORBIDDEN.
pub struct RequireAdmin;

impl Guard for RequireAdmin {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match ctx.data_opt::<Principal>() {
            Some(p) if p.is_admin() => Ok(()),
            Some(_) => Err(AppError::Forbidden("this needs the ADMIN role").into()),
            None => Err(AppError::Unauthenticated.into()),
        }
    }
}
