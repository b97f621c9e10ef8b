//! `cms-server --listen ADDR --config FILE`: see [`cms_server::server::main`].

// The hot path allocates and frees many small objects (model values cloned out of a
// driver, serialized, dropped); mimalloc does this far faster than the system
// allocator under concurrency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cms_server::server::main()
}
