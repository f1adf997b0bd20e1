//! TODO(owner): see the module list in `routes/mod.rs`.

use axum::Router;

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
}
