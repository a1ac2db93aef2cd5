//! `veil keygen`: a fresh signed-key pair from the OS generator: the insert
//! URI (secret) and the request URI (to share).

use std::process::ExitCode;

use anyhow::Result;

pub fn run() -> Result<ExitCode> {
    let insert = veil::client::usk::keygen(&mut rand::rngs::OsRng);
    println!("{insert}");
    println!("{}", insert.public());
    eprintln!(
        "first line: the insert URI, keep it secret (publish with `veil put --usk \
         '<insert URI><site>' FILE` or `--dir DIR`); second line: the request URI, to share"
    );
    Ok(ExitCode::SUCCESS)
}
