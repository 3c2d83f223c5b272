//! A private PostgreSQL 15 cluster on a free loopback port, for the tests that write through
//! an ORM or import from SQL: trust authentication, no durability (fsync off), removed on drop.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::free_port;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
}

impl Postgres {
    /// Starts a cluster (database and superuser `postgres`); panics with its log if it fails.
    pub fn start() -> Postgres {
        assert!(
            Path::new(BIN).join("postgres").exists(),
            "PostgreSQL 15 is missing: run `make pg-deps`"
        );
        let mut last_error = String::new();
        // Another process may take the free port before the server binds it.
        for _attempt in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("crm-test-pg-{}-{port}", std::process::id()));
            let postgres = Postgres { port, dir };
            match postgres.try_start() {
                Ok(()) => return postgres,
                Err(error) => last_error = error,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    fn try_start(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).unwrap();
        // Root runs the server as `postgres` (it refuses root), which must reach the folder.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = self.data();
        run(self
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg("--no-sync"))?;
        let settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.port,
            self.dir.display()
        );
        std::fs::write(
            data.join("postgresql.conf"),
            std::fs::read_to_string(data.join("postgresql.conf")).unwrap() + &settings,
        )
        .unwrap();
        run(self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "start"]))
        .map_err(|error| {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            format!("{error}\n{log}")
        })?;
        Ok(())
    }

    /// The connection URL for clients (node-postgres, Sequelize, psql).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` (one or more statements, in one transaction) and returns the rows, one a
    /// line, columns separated by `|`, without the last newline; panics with psql's error.
    pub fn psql(&self, sql: &str) -> String {
        let output = run(Command::new(Path::new(BIN).join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql))
        .unwrap_or_else(|error| panic!("{error}"));
        let mut rows = String::from_utf8(output.stdout).unwrap();
        if rows.ends_with('\n') {
            rows.pop();
        }
        rows
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A PostgreSQL program, run as `postgres` when the tests run as root.
    fn server_command(&self, program: &str) -> Command {
        let program = Path::new(BIN).join(program);
        let mut command = if running_as_root() {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        // The postgres user may not read the tests' working directory.
        command.current_dir(&self.dir);
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The effective user is root: /proc/self belongs to the process's effective user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0)
}

/// Runs a command to its end; `Err` carries its standard error when it fails.
fn run(command: &mut Command) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
