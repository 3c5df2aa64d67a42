//! Prometheus metrics at /metrics: GraphQL requests by operation and outcome, decrypts,
//! audit write failures, provider calls, and the database pool. Never a secret in a label.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder (metrics are per process, whatever number of servers runs in it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's): ours still renders.
        let _ = ::metrics::set_global_recorder(recorder);
        handle
    })
}

/// The text exposition, with the pool gauges refreshed first.
pub fn render(db: &DatabaseConnection) -> String {
    let handle = handle();
    let (size, idle) = pool_usage(db);
    ::metrics::gauge!("keyward_db_pool_connections").set(size as f64);
    ::metrics::gauge!("keyward_db_pool_idle_connections").set(idle as f64);
    handle.render()
}

fn pool_usage(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    }
}

pub fn record_decrypt(success: bool) {
    ::metrics::counter!("keyward_decrypts_total", "outcome" => if success { "ok" } else { "refused" }).increment(1);
}

pub fn record_audit_write_failure() {
    ::metrics::counter!("keyward_audit_write_failures_total").increment(1);
}

pub fn record_provider_call(provider: &'static str, outcome: &'static str, elapsed: Duration) {
    ::metrics::counter!("keyward_provider_calls_total", "provider" => provider, "outcome" => outcome).increment(1);
    ::metrics::histogram!("keyward_provider_call_duration_seconds", "provider" => provider, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A GraphQL extension that times each request and labels it with its operation name
/// (as the document names it, else `anonymous`) and outcome (`OK` or the first error code).
pub struct GraphqlMetrics;

impl ExtensionFactory for GraphqlMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest {
            operation: Mutex::new(None),
        })
    }
}

struct PerRequest {
    operation: Mutex<Option<String>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let operation = self
            .operation
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_else(|| "invalid".into());
        let outcome = response
            .errors
            .first()
            .and_then(|e| {
                e.extensions
                    .as_ref()?
                    .get("code")
                    .map(|v| v.to_string().trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| "OK".into());
        ::metrics::counter!("keyward_graphql_requests_total", "operation" => operation.clone(), "outcome" => outcome.clone())
            .increment(1);
        ::metrics::histogram!("keyward_graphql_request_duration_seconds", "operation" => operation, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let name = document
            .operations
            .iter()
            .next()
            .map(|(name, op)| {
                let kind = match op.node.ty {
                    OperationType::Query => "query",
                    OperationType::Mutation => "mutation",
                    OperationType::Subscription => "subscription",
                };
                // Names are client-chosen: bound their length so labels stay few and short.
                let name: String = name
                    .map(|n| n.as_str())
                    .unwrap_or("anonymous")
                    .chars()
                    .take(64)
                    .collect();
                format!("{kind} {name}")
            })
            .unwrap_or_else(|| "none".into());
        *self.operation.lock().expect("not poisoned") = Some(name);
        Ok(document)
    }
}
