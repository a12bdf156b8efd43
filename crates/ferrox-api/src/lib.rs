//! The REST server in Proxmox VE's `/api2/json` (and `/api2/extjs`) conventions: routing,
//! parameter declarations and validation, authentication (tickets, CSRF, API tokens),
//! role-based access control, tasks with UPIDs, and the OpenAPI document.
//!
//! It knows nothing about guests, storage or the cluster: the node daemon declares those
//! endpoints with this crate's types and implements them.

pub mod access;
pub mod auth;
pub mod core;
pub mod error;
pub use ferrox_types::fsutil;
pub mod http;
pub mod ldap;
pub mod openapi;
pub mod pam_realm;
pub mod rbac;
pub mod realms;
pub mod router;
pub mod schema;
pub mod tasks;
pub mod tfa;
pub mod websocket;

pub use auth::{Auth, Caller};
pub use error::ApiError;
pub use router::{
    Api, ApiReply, ApiState, Ctx, Endpoint, Method, Paged, Permission, RawRequest, RawResponse,
    Reply, Serialized,
};
pub use schema::{Extra, Param, ParamType, Params};
pub use tasks::{TaskError, TaskLog, TaskOutcome, TaskStore};
