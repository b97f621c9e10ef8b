//! # cms-server
//!
//! The REST facade of cms over any cms driver. Requests flow one way:
//!
//! ```text
//! frontends::native (/v1, JSON)   frontends::ec2 (/ec2, Query + SigV4)
//!                \                 /
//!                 service (tenants' view: ownership, pages, key names, quotas, ids)
//!                 /              \
//!          store (SQL)        cms_core::Cloud (layers) -> driver
//! ```
//!
//! - [`frontends`]: each wire protocol parses, authenticates and renders: a native JSON
//!   API with RFC 9457 problems and an OpenAPI document generated from the code, and an
//!   EC2-compatible Query API (SigV4-signed).
//! - [`service`]: what is true for every frontend, once: which instances a tenant sees
//!   (ownership travels with each instance), exact pages, per-tenant key pair names,
//!   public ids, quotas, journaled creates.
//! - [`store`]: what must outlive the process, in SQLite or PostgreSQL.
//! - Tenants with API keys and access key pairs ([`auth`]), Prometheus metrics and
//!   structured logs.
//!
//! The binary `cms-server` is [`server::main`]; tests and embedders can build the
//! state and the warp filter themselves:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//! use cms_server::{app::{App, Env}, config::Config, server};
//!
//! # #[tokio::main] async fn main() {
//! let config = Config::from_toml(r#"
//!     state = "sqlite::memory:"
//!     [[providers]]
//!     name = "local"
//!     driver = "memory"
//!     [[tenants]]
//!     name = "me"
//!     api_key = "a-long-random-key"
//!     providers = ["*"]
//! "#).unwrap();
//! let (app, _) = App::new(&config, Env::default()).await.unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = listener.local_addr().unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! // `None`: plain HTTP; `Some(Arc<tls::Tls>)` serves HTTPS.
//! let running = tokio::spawn(server::serve(Arc::new(app), listener, None, async {
//!     let _ = stopped.await;
//! }));
//!
//! let answer = tokio::task::spawn_blocking(move || {
//!     let mut s = std::net::TcpStream::connect(addr).unwrap();
//!     s.write_all(b"GET /v1/providers HTTP/1.0\r\nAuthorization: Bearer a-long-random-key\r\n\r\n").unwrap();
//!     let mut answer = String::new();
//!     s.read_to_string(&mut answer).unwrap();
//!     answer
//! }).await.unwrap();
//! assert!(answer.starts_with("HTTP/1.0 200 OK"));
//! assert!(answer.contains(r#""name":"local""#));
//!
//! stop.send(()).unwrap();
//! running.await.unwrap();
//! # }
//! ```
//!
//! Routes: see [`frontends::native::routes::ROUTES`]; configuration: see [`config`].

pub mod app;
pub mod auth;
pub mod config;
pub mod frontends;
pub mod fuzz;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
