//! The client side of the Ferrox API, shared by the `ferrox` binary, its tests and its
//! benchmarks. It talks HTTPS to a node; it holds no decision logic.

pub mod access;
pub mod client;
