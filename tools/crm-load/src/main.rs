//! crm-load: fills a server with CRM meetings through the module's write commands.
//!
//! ```text
//! crm-load generate --meetings 100000 [--port 6379] ...   (or crm-load --meetings ...)
//! crm-load import meetings <file.csv|file.jsonl> [--host H] [--port P] [--dry-run] [--allow-skips]
//! crm-load import users --postgres '<connection string>' --query 'SELECT ...'
//! ```
//! `generate` writes a realistic generated installation (generate.rs); `import` writes the
//! rows of a file or of a PostgreSQL query (import/).

mod generate;
mod import;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "crm-load",
    about = "Generates or imports CRM meetings into a server with the crm-meetings module",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand: `generate`, as crm-load always did.
    #[command(flatten)]
    generate: generate::Options,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a generated installation (meetings and users) through CRM.MEETING.SET
    Generate(generate::Options),
    /// Import meetings or users from a CSV or JSON lines file, or a PostgreSQL query
    Import(import::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        None => generate::run(&cli.generate).map(|()| ExitCode::SUCCESS),
        Some(Command::Generate(options)) => generate::run(options).map(|()| ExitCode::SUCCESS),
        Some(Command::Import(options)) => import::run(options),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("crm-load: {error}");
        ExitCode::FAILURE
    })
}
