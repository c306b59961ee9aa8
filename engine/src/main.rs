//! The `shardmq` binary: everything is in the library ([`shardmq_engine::cli`]); this file
//! only picks the global allocator.

#![forbid(unsafe_code)]

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    shardmq_engine::cli::main()
}
