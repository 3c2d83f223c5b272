//! The server crm-load writes to: where it is, the module's settings it writes through, and
//! the progress bar both subcommands show.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args, Debug, Clone)]
pub struct Server {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
}

impl Server {
    pub fn connect(&self) -> Result<redis::Connection, String> {
        let url = format!("redis://{}:{}/", self.host, self.port);
        redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection())
            .map_err(|e| format!("cannot connect to {url}: {e}"))
    }
}

/// The server's `crm.*` settings that decide where and how rows are written.
pub struct Settings {
    /// `crm.meeting-key`: the hash of a meeting (`<installation>`, `<id>`).
    pub meeting: String,
    /// `crm.clients-key`: the set of the clients a user may see (`<installation>`, `<user>`).
    pub clients: String,
    /// `crm.filter-fields`: fields with a set per value.
    pub filter_fields: Vec<String>,
    /// `crm.sort-fields`: fields whose values must be dates or numbers.
    pub sort_fields: Vec<String>,
}

impl Settings {
    pub fn read(con: &mut redis::Connection) -> Result<Settings, String> {
        let mut get = |name: &str| -> Result<String, String> {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(con)
                .map_err(|e| format!("reading {name}: {e}"))?;
            pair.into_iter()
                .nth(1)
                .ok_or_else(|| format!("{name} is not set: is the module loaded?"))
        };
        let mut list = |name: &str| -> Result<Vec<String>, String> {
            Ok(get(name)?.split_whitespace().map(str::to_string).collect())
        };
        Ok(Settings {
            filter_fields: list("crm.filter-fields")?,
            sort_fields: list("crm.sort-fields")?,
            meeting: get("crm.meeting-key")?,
            clients: get("crm.clients-key")?,
        })
    }

    pub fn meeting_key(&self, installation: &str, id: &str) -> String {
        render(
            &self.meeting,
            &[("<installation>", installation), ("<id>", id)],
        )
    }

    pub fn clients_key(&self, installation: &str, user: &str) -> String {
        render(
            &self.clients,
            &[("<installation>", installation), ("<user>", user)],
        )
    }
}

/// `template` with each placeholder replaced, in one pass (a value holding a placeholder's
/// text stays as it is).
pub fn render(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(first) = rest.chars().next() {
        match slots.iter().find(|(token, _)| rest.starts_with(token)) {
            Some((token, value)) => {
                out.push_str(value);
                rest = &rest[token.len()..];
            }
            None => {
                out.push(first);
                rest = &rest[first.len_utf8()..];
            }
        }
    }
    out
}

/// A bar of `total` `unit` (a counter with a rate when the total is unknown), drawn on a
/// terminal only.
pub fn progress_bar(total: Option<u64>, unit: &str) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            format!("[{{bar:40}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}} ({{eta}} left)"),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{spinner}} {{human_pos}} {unit}, {{per_sec}}"),
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn renders_templates_in_one_pass() {
        let slots = [("<installation>", "10"), ("<id>", "<installation>")];
        assert_eq!(
            render("{<installation>}:meeting:<id>", &slots),
            "{10}:meeting:<installation>"
        );
        assert_eq!(
            render("clients_for_user:<user>", &[("<user>", "g1")]),
            "clients_for_user:g1"
        );
    }
}
