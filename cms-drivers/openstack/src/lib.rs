//! # cms-driver-openstack
//!
//! The cms driver for OpenStack: Nova servers, Glance images, Nova flavors, Neutron
//! networks, Nova availability zones and key pairs through the one cms model, so that
//! everything built on [`cms_core::Cloud`] (the layers, the server and its EC2 and CIMI
//! frontends) works on OpenStack. With the `fake` feature it also carries
//! `fake::FakeOpenStack`, a wire-level fake of Keystone, Nova, Glance and Neutron for
//! tests.
//!
//! It is built on the [`openstack`] crate's session ([`openstack::session::Session`],
//! osauth): Keystone v3 authentication (password or application credential), the
//! catalog, the endpoint choice by service type, region and interface, and the token
//! renewal all come from it. Every call goes through that one session as JSON the
//! driver reads itself ([`client`]), not through the crate's typed resources, because
//! the driver needs what those do not give: a compute microversion per request, the
//! fault body and request id of every failure (for [one classification](client)),
//! control of paging (Nova's `limit`/`marker`, Glance's `next`, Neutron's
//! `networks_links`), Neutron subnets, and Nova tags and metadata at create.
//!
//! ## Mapping
//!
//! | cms | OpenStack |
//! |---|---|
//! | instance | Nova server (`/servers/detail`, read at microversion 2.46 at most: the last that names a server's flavor by id) |
//! | image | Glance v2 image |
//! | flavor | Nova flavor |
//! | network | Neutron network; its range is its first IPv4 subnet's; create = network + subnet, delete takes its subnets along |
//! | location | Nova availability zone |
//! | key pair | Nova key pair; a create without a public key generates an ed25519 pair here and imports it (Nova 2.92 and later generate none) |
//! | tags, owner, client token | server metadata, mirrored as Nova tags for filtering ([`driver`]) |
//!
//! | cms state | Nova `status` (+ `OS-EXT-STS:task_state`) |
//! |---|---|
//! | pending | BUILD, REBUILD, RESIZE, REVERT_RESIZE, MIGRATING, PASSWORD; any status while `powering-on`, `spawning`, `scheduling`, `networking`, `block_device_mapping`, `unshelving` |
//! | running | ACTIVE, VERIFY_RESIZE, RESCUE |
//! | stopping | any status while `powering-off`, `shelving`, `shelving_offloading` |
//! | stopped | SHUTOFF, SHELVED, SHELVED_OFFLOADED |
//! | rebooting | REBOOT, HARD_REBOOT; any status while a `reboot…` task runs |
//! | suspended | SUSPENDED, PAUSED |
//! | terminating | any status while `deleting` or `soft-deleting` |
//! | terminated | DELETED, SOFT_DELETED (or gone: 404) |
//! | error | ERROR |
//! | unknown | UNKNOWN, anything else |
//!
//! The raw state keeps both: `ACTIVE/powering-off`.
//!
//! Nova forgets a deleted server (404); EC2 clients wait for `terminated` (boto3's
//! `instance_terminated` waiter fails on a missing instance). So a server this driver
//! deleted is answered as `terminated` (raw `DELETED`) by `get_instance` and by
//! listings by id for [`driver::DELETED_KEPT_FOR`] after Nova forgot it; it is not in
//! other listings, and a driver that did not delete it (another process, a restart)
//! answers `NotFound`.
//!
//! ## Behaviour met on real OpenStack
//!
//! - Nova refuses metadata and tag changes while a server builds or a task runs:
//!   tag updates wait for the server to settle (at most two minutes).
//! - A start or stop repeated because its first answer was lost (the retry layer
//!   repeats actions) finds Nova busy with the task it started, or done with it; the
//!   driver answers it as the same request until it has shown the action's end, after
//!   which a second stop of a stopped server is `InvalidState`, as Nova says.
//! - Listings ask for `created_at` then `uuid` order: Nova's default tiebreak (its
//!   internal id) let pages repeat servers created in the same second.
//! - A page marker Nova no longer knows (its rows archived) restarts the listing,
//!   which skips what came before the marker, so nothing is repeated or lost.
//! - Idle connections are not kept past 1.5 s (WSGI servers close theirs after a few
//!   seconds), and a GET that meets a closed connection is sent once more.
//! - osauth's forced token refresh keeps a token that has not reached its expiry
//!   time: a 401 makes a new session (a new token) instead, once.
//!
//! ## Microversions
//!
//! The compute microversion is the highest both the cloud's version document and the
//! driver know (2.100; `microversion` in the configuration lowers it), sent as
//! `OpenStack-API-Version: compute 2.N` (and the older `X-OpenStack-Nova-API-Version`).
//! What changes with it: tags at create from 2.52 (2.26–2.51: set after the create;
//! below 2.26: metadata only, and no filter by tags); `networks: "auto"` when a create
//! names no network and none is configured, from 2.37 (below: Nova's own choice);
//! key pairs paged from 2.35 and typed from 2.2. Everything works at 2.1.
//!
//! ## Not covered
//!
//! Security groups, floating IPs, Cinder volumes and snapshots and image capture are
//! declared unsupported ([`driver::capabilities`]): the operations answer
//! `Unsupported`. Shelving, resizing, rebuilding, rescue and server groups have no cms
//! operation.

pub mod client;
pub mod config;
pub mod driver;
#[cfg(feature = "fake")]
pub mod fake;
pub mod model;
#[cfg(feature = "fake")]
pub mod testbed;

pub use config::OpenStackConfig;
pub use driver::OpenStackDriver;
