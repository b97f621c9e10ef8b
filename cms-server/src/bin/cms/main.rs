//! `cms`: the cms facade from a terminal. Every command is one or a few calls of the
//! native API, made through the remote driver (`cms-driver-remote`), so the command
//! line sees exactly what a program holding a remote provider sees.
//!
//! Exit codes: 0 done, 1 other failures (a wait that timed out), 2 usage (a bad flag,
//! a value the server refused, no API key), 3 not found, 4 conflict (an instance in
//! the wrong state, a name that exists, an idempotency key used for another request),
//! 5 the backend failed or cannot (unavailable, timed out, rate limited, unsupported),
//! 6 authentication or permission (a wrong key, a quota), 130 interrupted.

mod context;
mod output;
mod wait;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use cms_core::{
    Cloud, Error, ErrorKind, ImageId, Instance, InstanceAction, InstanceFilter, InstanceId,
    InstanceSpec, InstanceState, KeyPairSpec, LocationId, NetworkId, NetworkSpec, Page,
    PageRequest, TagChanges, Tags,
};
use cms_driver_remote::{ApiKey, Client};
use serde::Serialize;
use serde_json::Value;

use output::{Format, Shown};
use wait::Goal;

const EXAMPLES: &str = "\
Examples:
  export CMS_URL=http://127.0.0.1:8080 CMS_API_KEY=…   # or a context in ~/.config/cms/config.toml
  cms providers
  cms images
  cms instances create --image img-ubuntu-24.04 --flavor flv-1cpu-1gb --name web-1 --wait
  cms instances list --state running --tag env=prod -o json
  cms instances delete i-123 --wait

Exit codes: 0 done, 1 other, 2 usage, 3 not found, 4 conflict, 5 backend, 6 auth, 130 interrupted.";

/// The cms facade from a terminal: instances, images, flavors, networks, locations and
/// key pairs on every provider of a cms server.
#[derive(Parser, Debug)]
#[command(name = "cms", version, after_help = EXAMPLES)]
struct Cli {
    /// The server's base URL [default: the context's, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "CMS_URL", value_name = "URL")]
    url: Option<String>,
    /// A tenant's API key (prefer the variable: flags show in process listings).
    #[arg(
        long,
        global = true,
        env = "CMS_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,
    /// The provider to use [default: the context's, else the server's only one].
    #[arg(long, short = 'p', global = true, env = "CMS_PROVIDER")]
    provider: Option<String>,
    /// A named context of the config file (`current_context` when not given).
    #[arg(long, global = true, env = "CMS_CONTEXT")]
    context: Option<String>,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, short = 'o', global = true, value_enum)]
    output: Option<Format>,
    /// Seconds one request to the server may take.
    #[arg(
        long,
        global = true,
        default_value_t = 60,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    request_timeout: u64,
    /// Items per request of a listing (every page is fetched) [default: the server's].
    #[arg(
        long,
        global = true,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    page_size: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The providers your key may use, with their drivers.
    #[command(after_help = "Example:\n  cms providers -o json")]
    Providers,
    /// Instances (virtual machines): list, get, create, start, stop, reboot, delete, tag.
    #[command(
        subcommand,
        after_help = "Example:\n  cms instances list --state running"
    )]
    Instances(InstanceCmd),
    /// Images to boot from (`cms images` lists them).
    #[command(after_help = "Example:\n  cms images\n  cms images get img-ubuntu-24.04")]
    Images {
        #[command(subcommand)]
        cmd: Option<ImageCmd>,
    },
    /// Flavors (instance sizes).
    #[command(after_help = "Example:\n  cms flavors -o yaml")]
    Flavors,
    /// Networks (`cms networks` lists them).
    #[command(
        after_help = "Example:\n  cms networks create backend --cidr 10.1.0.0/24\n  cms networks"
    )]
    Networks {
        #[command(subcommand)]
        cmd: Option<NetworkCmd>,
    },
    /// Locations (availability zones, clusters, VDCs).
    #[command(after_help = "Example:\n  cms locations")]
    Locations,
    /// Key pairs (`cms key-pairs` lists them).
    #[command(
        after_help = "Example:\n  cms key-pairs create deploy --private-key-file deploy.pem\n  cms key-pairs"
    )]
    KeyPairs {
        #[command(subcommand)]
        cmd: Option<KeyCmd>,
    },
    /// Prints a shell completion script.
    #[command(
        after_help = "Example:\n  cms completion bash > /etc/bash_completion.d/cms\n  cms completion zsh > \"${fpath[1]}/_cms\"\n  cms completion fish > ~/.config/fish/completions/cms.fish"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum InstanceCmd {
    /// Lists instances (every page), filtered; every provider when none is chosen.
    #[command(
        after_help = "Example:\n  cms instances list --state running,stopped --tag env=prod --name web-1"
    )]
    List(ListArgs),
    /// Shows one instance.
    #[command(after_help = "Example:\n  cms instances get i-123 -o yaml")]
    Get {
        /// The instance id.
        id: String,
    },
    /// Creates an instance.
    #[command(
        after_help = "Example:\n  cms instances create --image img-ubuntu-24.04 --flavor flv-1cpu-1gb \\\n      --name web-1 --tag env=demo --idempotency-key web-1 --wait"
    )]
    Create(Box<CreateArgs>),
    /// Starts stopped instances.
    #[command(after_help = "Example:\n  cms instances start i-123 i-456 --wait")]
    Start(ActArgs),
    /// Stops running instances.
    #[command(after_help = "Example:\n  cms instances stop i-123 --wait --timeout 5m")]
    Stop(ActArgs),
    /// Reboots running instances.
    #[command(after_help = "Example:\n  cms instances reboot i-123")]
    Reboot(ActArgs),
    /// Deletes (terminates) instances.
    #[command(after_help = "Example:\n  cms instances delete i-123 --wait")]
    Delete(ActArgs),
    /// Sets or removes tags of an instance.
    #[command(
        after_help = "Example:\n  cms instances tag i-123 --set env=prod --set team=web --remove old"
    )]
    Tag(TagArgs),
    /// Prints what the instance's console showed.
    #[command(after_help = "Example:\n  cms instances console i-123")]
    Console {
        /// The instance id.
        id: String,
    },
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only instances in these states (repeat, or comma-separate).
    #[arg(long, value_delimiter = ',')]
    state: Vec<InstanceState>,
    /// Only instances with this tag: `key=value`, or `key` for any value (repeat).
    #[arg(long, value_name = "KEY[=VALUE]")]
    tag: Vec<String>,
    /// Only instances of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only these instance ids (repeat).
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The image to boot (see `cms images`).
    #[arg(long)]
    image: String,
    /// The flavor (see `cms flavors`).
    #[arg(long)]
    flavor: String,
    /// A name.
    #[arg(long, default_value = "")]
    name: String,
    /// Networks to attach (repeat); the provider's default when none.
    #[arg(long = "network", value_name = "ID")]
    networks: Vec<String>,
    /// Where to place it.
    #[arg(long)]
    location: Option<String>,
    /// A key pair to install.
    #[arg(long)]
    key_name: Option<String>,
    /// User data (cloud-init and the like), as text.
    #[arg(long, conflicts_with = "user_data_file")]
    user_data: Option<String>,
    /// User data read from a file.
    #[arg(long, value_name = "PATH")]
    user_data_file: Option<PathBuf>,
    /// A tag, `key=value` (repeat).
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Vec<String>,
    /// Makes the create safe to repeat: the same key answers the same instance.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Waits until the operation is done, showing the state as it changes.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (90s, 5m, 1h).
    #[arg(long, default_value = "10m", value_parser = wait::parse_duration, requires = "wait")]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct ActArgs {
    /// Instance ids.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct TagArgs {
    /// The instance id.
    id: String,
    /// A tag to add or overwrite, `key=value` (repeat).
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A tag key to remove (repeat).
    #[arg(long, value_name = "KEY")]
    remove: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// Lists images (every page).
    #[command(after_help = "Example:\n  cms images list -o ids")]
    List,
    /// Shows one image.
    #[command(after_help = "Example:\n  cms images get img-ubuntu-24.04")]
    Get {
        /// The image id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// Lists networks (every page).
    #[command(after_help = "Example:\n  cms networks list")]
    List,
    /// Shows one network.
    #[command(after_help = "Example:\n  cms networks get net-default")]
    Get {
        /// The network id.
        id: String,
    },
    /// Creates a network.
    #[command(
        after_help = "Example:\n  cms networks create backend --cidr 10.1.0.0/24 --tag env=prod"
    )]
    Create {
        /// Its name.
        name: String,
        /// Its IPv4 range.
        #[arg(long)]
        cidr: String,
        /// Where to place it.
        #[arg(long)]
        location: Option<String>,
        /// A tag, `key=value` (repeat).
        #[arg(long, value_name = "KEY=VALUE")]
        tag: Vec<String>,
    },
    /// Deletes a network.
    #[command(after_help = "Example:\n  cms networks delete net-123")]
    Delete {
        /// The network id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Lists key pairs.
    #[command(after_help = "Example:\n  cms key-pairs list")]
    List,
    /// Creates a key pair; its private key is shown this once (or written to a file).
    #[command(
        after_help = "Example:\n  cms key-pairs create deploy --private-key-file ~/.ssh/deploy.pem"
    )]
    Create {
        /// Its name.
        name: String,
        /// Writes the private key to this file (mode 0600) instead of printing it.
        #[arg(long, value_name = "PATH")]
        private_key_file: Option<PathBuf>,
    },
    /// Imports a public key.
    #[command(
        after_help = "Example:\n  cms key-pairs import laptop --public-key-file ~/.ssh/id_ed25519.pub"
    )]
    Import {
        /// Its name.
        name: String,
        /// The OpenSSH public key file.
        #[arg(long, value_name = "PATH")]
        public_key_file: PathBuf,
    },
    /// Deletes a key pair.
    #[command(after_help = "Example:\n  cms key-pairs delete deploy")]
    Delete {
        /// Its name.
        name: String,
    },
}

/// Why a command failed: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
    request_id: Option<String>,
}

impl Failure {
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    pub const BACKEND: u8 = 5;
    pub const AUTH: u8 = 6;
    pub const INTERRUPTED: u8 = 130;

    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            request_id: None,
        }
    }

    pub fn usage(m: impl Into<String>) -> Failure {
        Failure::new(Failure::USAGE, m)
    }

    pub fn backend(m: impl Into<String>) -> Failure {
        Failure::new(Failure::BACKEND, m)
    }

    pub fn other(m: impl Into<String>) -> Failure {
        Failure::new(Failure::OTHER, m)
    }

    pub fn interrupted(m: impl Into<String>) -> Failure {
        Failure::new(Failure::INTERRUPTED, m)
    }

    /// The exit code of an error kind.
    pub fn code_of(e: &Error) -> u8 {
        match e.kind() {
            ErrorKind::InvalidArgument
                if e.context_value("reason") == Some("idempotent_parameter_mismatch") =>
            {
                Failure::CONFLICT
            }
            ErrorKind::InvalidArgument => Failure::USAGE,
            ErrorKind::NotFound => Failure::NOT_FOUND,
            ErrorKind::AlreadyExists | ErrorKind::InvalidState => Failure::CONFLICT,
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded => {
                Failure::AUTH
            }
            ErrorKind::Backend
            | ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::RateLimited
            | ErrorKind::Unsupported => Failure::BACKEND,
        }
    }

    pub fn from_error(e: &Error) -> Failure {
        let mut message = e.to_string();
        if let Some(after) = e.retry_after() {
            message.push_str(&format!(" (try again in {}s)", after.as_secs().max(1)));
        } else if e.is_temporary() {
            message.push_str(" (this may be temporary: try again)");
        }
        Failure {
            code: Failure::code_of(e),
            message,
            request_id: e.context_value("request_id").map(str::to_owned),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::from_error(&e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(Failure::OTHER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            if let Some(id) = &f.request_id {
                eprintln!("request id: {id}");
            }
            ExitCode::from(f.code)
        }
    }
}

/// What a command runs with: the client, the chosen provider, the format.
struct Session {
    client: Client,
    provider: Option<String>,
    format: Format,
    page_size: Option<u32>,
}

/// Every item of a listing, page after page, `size` items per request.
async fn collect<T, F, Fut>(cloud: &Cloud, size: Option<u32>, fetch: F) -> Result<Vec<T>, Failure>
where
    T: Send + 'static,
    F: Fn(Cloud, PageRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = cms_core::Result<Page<T>>> + Send + 'static,
{
    use futures::TryStreamExt;
    let cloud = cloud.clone();
    let items = cms_core::cloud::all_pages(move |mut page: PageRequest| {
        page.limit = size;
        fetch(cloud.clone(), page)
    })
    .try_collect()
    .await?;
    Ok(items)
}

impl Session {
    /// The provider's handle: the chosen one, else the server's only one.
    async fn cloud(&self) -> Result<Cloud, Failure> {
        // One listing both picks the provider and gives its capabilities.
        let providers = self.client.providers().await?;
        let name = match (&self.provider, providers.as_slice()) {
            (Some(p), _) => p.clone(),
            (None, [only]) => only.name.clone(),
            (None, many) => {
                let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
                return Err(Failure::usage(format!(
                    "choose a provider with --provider (or CMS_PROVIDER, or a context's `provider`); this key may use: {}",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )));
            }
        };
        let driver = self.client.driver_among(&providers, &name).map_err(|e| {
            let mut f = Failure::from_error(&e);
            if e.kind() == ErrorKind::NotFound {
                f.code = Failure::USAGE;
            }
            f
        })?;
        Ok(Cloud::builder(driver.as_server_shows())
            .provider(name)
            .build())
    }

    fn print(&self, shown: Shown) -> Result<(), Failure> {
        shown
            .print(self.format)
            .map_err(|e| Failure::other(format!("cannot write the output: {e}")))
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "cms", &mut std::io::stdout());
        return Ok(());
    }
    let r = context::resolve(cli.url, cli.api_key, cli.provider, cli.context, cli.output)?;
    let Some(key) = r.api_key else {
        return Err(Failure::usage(
            "no API key: set CMS_API_KEY, pass --api-key, or give a context an `api_key_env` \
             (see `cms --help`)",
        ));
    };
    let client = Client::new(
        &r.url,
        ApiKey::new(key),
        Duration::from_secs(cli.request_timeout),
    )
    .map_err(|e| Failure::usage(e.to_string()))?;
    let format = r.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let s = Session {
        client,
        provider: r.provider,
        format,
        page_size: cli.page_size,
    };
    match cli.command {
        Command::Completion { .. } => Ok(()),
        Command::Providers => {
            let list = s.client.providers().await?;
            s.print(listing(
                &list,
                &[("NAME", "name"), ("DRIVER", "driver")],
                "name",
            ))
        }
        Command::Instances(cmd) => instances(&s, cmd).await,
        Command::Images { cmd } => match cmd.unwrap_or(ImageCmd::List) {
            ImageCmd::List => {
                let list = collect(&s.cloud().await?, s.page_size, |c, p| async move {
                    c.list_images(&cms_core::ImageFilter::default(), &p).await
                })
                .await?;
                s.print(listing(&list, IMAGE_COLUMNS, "id"))
            }
            ImageCmd::Get { id } => {
                let image = s.cloud().await?.get_image(&ImageId::new(id)).await?;
                s.print(one(&image, "id"))
            }
        },
        Command::Flavors => {
            let list = collect(&s.cloud().await?, s.page_size, |c, p| async move {
                c.list_flavors(&p).await
            })
            .await?;
            s.print(listing(
                &list,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("VCPUS", "vcpus"),
                    ("MEMORY-MIB", "memory_mib"),
                    ("DISK-GIB", "disk_gib"),
                ],
                "id",
            ))
        }
        Command::Networks { cmd } => networks(&s, cmd.unwrap_or(NetworkCmd::List)).await,
        Command::Locations => {
            let list = s.cloud().await?.list_locations().await?;
            s.print(listing(
                &list,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("REGION", "region"),
                    ("AVAILABLE", "available"),
                ],
                "id",
            ))
        }
        Command::KeyPairs { cmd } => key_pairs(&s, cmd.unwrap_or(KeyCmd::List)).await,
    }
}

const INSTANCE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("FLAVOR", "flavor_id"),
    ("IMAGE", "image_id"),
    ("PRIVATE-IPS", "private_ips"),
    ("TAGS", "tags"),
];

const IMAGE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("KIND", "kind"),
    ("OS", "os"),
    ("STATE", "raw_state"),
];

/// A list of items as a table of `columns` (header, JSON field), JSON array and ids.
fn listing<T: Serialize>(items: &[T], columns: &[(&'static str, &str)], id_field: &str) -> Shown {
    let values: Vec<Value> = items
        .iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    let rows = values
        .iter()
        .map(|v| columns.iter().map(|(_, f)| output::cell(&v[*f])).collect())
        .collect();
    let ids = values.iter().map(|v| output::cell(&v[id_field])).collect();
    Shown {
        value: Value::Array(values),
        headers: columns.iter().map(|(h, _)| *h).collect(),
        rows,
        ids,
    }
}

/// One item: a FIELD/VALUE table, the JSON object, its id.
fn one<T: Serialize>(item: &T, id_field: &str) -> Shown {
    let value = serde_json::to_value(item).unwrap_or(Value::Null);
    Shown {
        rows: output::fields(&value),
        headers: vec!["FIELD", "VALUE"],
        ids: vec![output::cell(&value[id_field])],
        value,
    }
}

fn parse_tags(pairs: &[String], what: &str) -> Result<Tags, Failure> {
    let mut tags = Tags::new();
    for p in pairs {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                tags.insert(k.to_owned(), v.to_owned());
            }
            _ => return Err(Failure::usage(format!("{what} `{p}` must be `key=value`"))),
        }
    }
    Ok(tags)
}

async fn instances(s: &Session, cmd: InstanceCmd) -> Result<(), Failure> {
    match cmd {
        InstanceCmd::List(args) => {
            let mut filter = InstanceFilter {
                ids: args.ids.into_iter().map(InstanceId::new).collect(),
                states: args.state,
                name: args.name,
                ..Default::default()
            };
            for t in &args.tag {
                match t.split_once('=') {
                    Some((k, v)) => filter.tags.insert(k.to_owned(), Some(v.to_owned())),
                    None => filter.tags.insert(t.clone(), None),
                };
            }
            if s.provider.is_none() {
                let all = s.client.all_instances(&filter).await?;
                let mut columns = vec![("PROVIDER", "provider")];
                columns.extend_from_slice(INSTANCE_COLUMNS);
                s.print(listing(&all.items, &columns, "id"))?;
                if let Some(first) = all.errors.first() {
                    for e in &all.errors {
                        eprintln!(
                            "warning: provider `{}` is missing from the listing: {}",
                            e.provider, e.detail
                        );
                    }
                    return Err(Failure::new(
                        if first.status < 500 {
                            Failure::OTHER
                        } else {
                            Failure::BACKEND
                        },
                        format!("{} provider(s) did not answer", all.errors.len()),
                    ));
                }
                return Ok(());
            }
            let list = collect(&s.cloud().await?, s.page_size, move |c, p| {
                let filter = filter.clone();
                async move { c.list_instances(&filter, &p).await }
            })
            .await?;
            s.print(listing(&list, INSTANCE_COLUMNS, "id"))
        }
        InstanceCmd::Get { id } => {
            let i = s.cloud().await?.get_instance(&InstanceId::new(id)).await?;
            s.print(one(&i, "id"))
        }
        InstanceCmd::Create(args) => {
            let user_data =
                match (&args.user_data, &args.user_data_file) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                        Failure::usage(format!("cannot read {}: {e}", path.display()))
                    })?),
                    (None, None) => None,
                };
            let spec = InstanceSpec {
                name: args.name,
                image_id: ImageId::new(args.image),
                flavor_id: args.flavor.into(),
                network_ids: args.networks.into_iter().map(NetworkId::new).collect(),
                location_id: args.location.map(LocationId::new),
                key_name: args.key_name,
                user_data,
                tags: parse_tags(&args.tag, "tag")?,
                client_token: args.idempotency_key,
                owner: None,
                security_group_ids: Vec::new(),
                volumes: Vec::new(),
            };
            let cloud = s.cloud().await?;
            let made = cloud.create_instance(&spec).await?;
            let shown = if args.wait.wait {
                wait::wait(&cloud, made, Goal::Running, args.wait.timeout).await?
            } else {
                made
            };
            s.print(one(&shown, "id"))
        }
        InstanceCmd::Start(a) => act(s, InstanceAction::Start, a).await,
        InstanceCmd::Stop(a) => act(s, InstanceAction::Stop, a).await,
        InstanceCmd::Reboot(a) => act(s, InstanceAction::Reboot, a).await,
        InstanceCmd::Delete(a) => act(s, InstanceAction::Delete, a).await,
        InstanceCmd::Tag(args) => {
            let changes = TagChanges {
                set: parse_tags(&args.set, "--set")?,
                remove: args.remove,
            };
            if changes.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: give --set key=value or --remove key",
                ));
            }
            let i = s
                .cloud()
                .await?
                .update_instance_tags(&InstanceId::new(args.id), &changes)
                .await?;
            s.print(one(&i, "id"))
        }
        InstanceCmd::Console { id } => {
            let out = s
                .cloud()
                .await?
                .console_output(&InstanceId::new(id))
                .await?;
            match s.format {
                Format::Table | Format::Ids => {
                    print!("{}", out.text);
                    if !out.text.is_empty() && !out.text.ends_with('\n') {
                        println!();
                    }
                    Ok(())
                }
                _ => s.print(one(&out, "text")),
            }
        }
    }
}

/// An action on each id, one after the other; the first failure decides the exit code,
/// the others are still tried.
async fn act(s: &Session, action: InstanceAction, args: ActArgs) -> Result<(), Failure> {
    let cloud = s.cloud().await?;
    let mut done: Vec<Instance> = Vec::new();
    let mut failed: Option<Failure> = None;
    let single = args.ids.len() == 1;
    for id in args.ids {
        let id = InstanceId::new(id);
        let r = match action {
            InstanceAction::Start => cloud.start_instance(&id).await,
            InstanceAction::Stop => cloud.stop_instance(&id).await,
            InstanceAction::Reboot => cloud.reboot_instance(&id).await,
            InstanceAction::Delete => cloud.delete_instance(&id).await,
        };
        let r = match r {
            Ok(i) if args.wait.wait => {
                wait::wait(&cloud, i, wait::goal_of(action), args.wait.timeout).await
            }
            Ok(i) => Ok(i),
            Err(e) => Err(Failure::from_error(&e)),
        };
        match r {
            Ok(i) => done.push(i),
            Err(f) if f.code == Failure::INTERRUPTED || single => return Err(f),
            Err(f) => {
                eprintln!("error: {}", f.message);
                if let Some(r) = &f.request_id {
                    eprintln!("request id: {r}");
                }
                failed.get_or_insert(Failure {
                    message: format!("could not {} every instance", action.verb()),
                    ..f
                });
            }
        }
    }
    if !done.is_empty() {
        s.print(listing(&done, INSTANCE_COLUMNS, "id"))?;
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

async fn networks(s: &Session, cmd: NetworkCmd) -> Result<(), Failure> {
    let cloud = s.cloud().await?;
    match cmd {
        NetworkCmd::List => {
            let list = collect(&cloud, s.page_size, |c, p| async move {
                c.list_networks(&p).await
            })
            .await?;
            s.print(listing(
                &list,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("CIDR", "cidr"),
                    ("LOCATION", "location_id"),
                    ("DEFAULT", "is_default"),
                ],
                "id",
            ))
        }
        NetworkCmd::Get { id } => {
            let n = cloud.get_network(&NetworkId::new(id)).await?;
            s.print(one(&n, "id"))
        }
        NetworkCmd::Create {
            name,
            cidr,
            location,
            tag,
        } => {
            let spec = NetworkSpec {
                name,
                cidr,
                location_id: location.map(LocationId::new),
                tags: parse_tags(&tag, "tag")?,
            };
            let n = cloud.create_network(&spec).await?;
            s.print(one(&n, "id"))
        }
        NetworkCmd::Delete { id } => {
            cloud.delete_network(&NetworkId::new(id.clone())).await?;
            eprintln!("deleted network {id}");
            Ok(())
        }
    }
}

async fn key_pairs(s: &Session, cmd: KeyCmd) -> Result<(), Failure> {
    let cloud = s.cloud().await?;
    match cmd {
        KeyCmd::List => {
            let list = cloud.list_key_pairs().await?;
            s.print(listing(
                &list,
                &[("NAME", "name"), ("FINGERPRINT", "fingerprint")],
                "name",
            ))
        }
        KeyCmd::Create {
            name,
            private_key_file,
        } => {
            // Refuse before the key exists: a key whose private half is lost is useless.
            if let Some(p) = &private_key_file {
                if p.exists() {
                    return Err(Failure::usage(format!(
                        "{} exists; the private key is written to a new file only",
                        p.display()
                    )));
                }
            }
            let mut kp = cloud
                .create_key_pair(&KeyPairSpec {
                    name,
                    public_key: None,
                })
                .await?;
            if let Some(p) = &private_key_file {
                let pem = kp.private_key.take().unwrap_or_default();
                write_private(p, &pem).map_err(|e| {
                    Failure::other(format!(
                        "the key pair `{}` was made, but its private key could not be written to {}: {e}; delete it and try again",
                        kp.name,
                        p.display()
                    ))
                })?;
                eprintln!("private key written to {}", p.display());
                return s.print(one(&kp, "name"));
            }
            match s.format {
                Format::Table => {
                    let pem = kp.private_key.take().unwrap_or_default();
                    s.print(one(&kp, "name"))?;
                    print!("\n{pem}");
                    if !pem.ends_with('\n') {
                        println!();
                    }
                    Ok(())
                }
                _ => s.print(one(&kp, "name")),
            }
        }
        KeyCmd::Import {
            name,
            public_key_file,
        } => {
            let key = std::fs::read_to_string(&public_key_file).map_err(|e| {
                Failure::usage(format!("cannot read {}: {e}", public_key_file.display()))
            })?;
            let kp = cloud
                .create_key_pair(&KeyPairSpec {
                    name,
                    public_key: Some(key.trim().to_owned()),
                })
                .await?;
            s.print(one(&kp, "name"))
        }
        KeyCmd::Delete { name } => {
            cloud.delete_key_pair(&name).await?;
            eprintln!("deleted key pair {name}");
            Ok(())
        }
    }
}

/// Writes a private key to a new file only its owner may read.
fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_help_with_an_example() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in c.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_name() == "help" {
                    continue;
                }
                let has = sub
                    .get_after_help()
                    .is_some_and(|h| h.to_string().contains("Example:\n  cms "));
                if !has {
                    missing.push(name.clone());
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{name} (no about)"));
                }
                walk(sub, &name, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "cms", &mut missing);
        assert!(missing.is_empty(), "without an example: {missing:?}");
    }

    #[test]
    fn error_kinds_have_exit_codes() {
        let code = |k| Failure::code_of(&Error::new(k, "x"));
        assert_eq!(code(ErrorKind::NotFound), 3);
        assert_eq!(code(ErrorKind::InvalidState), 4);
        assert_eq!(code(ErrorKind::AlreadyExists), 4);
        assert_eq!(code(ErrorKind::Unavailable), 5);
        assert_eq!(code(ErrorKind::Unauthenticated), 6);
        assert_eq!(code(ErrorKind::InvalidArgument), 2);
        let conflict = Error::new(ErrorKind::InvalidArgument, "x")
            .with_context("reason", "idempotent_parameter_mismatch");
        assert_eq!(Failure::code_of(&conflict), 4);
    }
}
