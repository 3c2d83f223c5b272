//! Users: (user, client) rows gathered per user, then each user's set of visible clients
//! (`crm.clients-key`) replaced in one MULTI/EXEC: a re-run gives the same sets, and a client
//! no longer in the rows is revoked.

use std::collections::{BTreeMap, BTreeSet};

use super::rows::{At, ReadRows, Row};
use super::{installation_of, Options, Reason, Report, Skip};
use crate::server::{render, Settings};

/// Users per pipeline.
const USERS_A_CALL: usize = 100;
/// Members per SADD.
const CLIENTS_A_CALL: usize = 10_000;

/// Reads every row, replaces each user's set; returns how they were written.
pub fn import(
    options: &Options,
    settings: &Settings,
    con: &mut redis::Connection,
    report: &Report,
    rows: &mut ReadRows,
) -> Result<String, String> {
    let per_installation = settings.clients.contains("<installation>");
    // Each user's key, with their clients (one a row).
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut installations: BTreeSet<String> = options.installation.iter().cloned().collect();
    rows(&mut |row| {
        report.read();
        match row.and_then(|row| pair_of(row, options, per_installation)) {
            Ok((installation, user, client)) => {
                installations.insert(installation.clone());
                sets.entry(settings.clients_key(&installation, &user))
                    .or_default()
                    .push(client);
            }
            Err(skip) => report.skip(skip),
        }
        Ok(())
    })?;
    let users = sets.len();
    let pruned = match options.prune {
        true => unnamed_users(con, settings, &installations, &sets)?,
        false => Vec::new(),
    };
    if options.dry_run {
        report.written(sets.values().map(|clients| clients.len() as u64).sum());
        return Ok(String::new());
    }
    for keys in pruned.chunks(CLIENTS_A_CALL) {
        redis::cmd("DEL")
            .arg(keys)
            .query::<()>(con)
            .map_err(|e| format!("deleting the sets of users without rows: {e}"))?;
    }
    let sets: Vec<(String, Vec<String>)> = sets.into_iter().collect();
    for chunk in sets.chunks(USERS_A_CALL) {
        let mut pipe = redis::pipe();
        for (key, clients) in chunk {
            pipe.cmd("MULTI").ignore().cmd("DEL").arg(key).ignore();
            for part in clients.chunks(CLIENTS_A_CALL) {
                pipe.cmd("SADD").arg(key).arg(part).ignore();
            }
            pipe.cmd("EXEC").ignore();
        }
        pipe.query::<()>(con)
            .map_err(|e| format!("writing users: {e}"))?;
        report.written(chunk.iter().map(|(_, clients)| clients.len() as u64).sum());
    }
    Ok(match options.prune {
        true => format!(
            "{users} users' sets replaced, {} without rows deleted",
            pruned.len()
        ),
        false => format!("{users} users' sets replaced"),
    })
}

/// The clients sets (of the installations the rows name) of users no row names.
fn unnamed_users(
    con: &mut redis::Connection,
    settings: &Settings,
    installations: &BTreeSet<String>,
    named: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    // One pattern per installation, or one for all where the template names none.
    let patterns: BTreeSet<String> = installations
        .iter()
        .map(|installation| {
            render(
                &glob_escaped(&settings.clients),
                &[
                    ("<installation>", &glob_escaped(installation)),
                    ("<user>", "*"),
                ],
            )
        })
        .collect();
    let mut unnamed = Vec::new();
    for pattern in patterns {
        let keys: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("set")
            .clone()
            .iter(con)
            .map_err(|e| format!("listing users' sets: {e}"))?;
        unnamed.extend(keys.filter(|key| !named.contains_key(key)));
    }
    Ok(unnamed)
}

/// `text` matched literally by a SCAN pattern.
fn glob_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A row as (installation, user, client); the installation only where the key names it.
fn pair_of(
    mut row: Row,
    options: &Options,
    per_installation: bool,
) -> Result<(String, String, String), Skip> {
    let at: At = row.at;
    let installation = match per_installation {
        true => installation_of(&mut row, options)?,
        false => String::new(),
    };
    let user = row.take("user").ok_or_else(|| Skip {
        at,
        reason: Reason::NoUser,
        message: "no user".into(),
    })?;
    let client = row.take("client").ok_or_else(|| Skip {
        at,
        reason: Reason::NoClient,
        message: format!("user '{user}' has no client"),
    })?;
    Ok((installation, user, client))
}
