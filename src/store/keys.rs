//! Key templates: how a deployment names its keys. A template such as
//! `meeting_<field>:<value>_ins_<installation>` is parsed once, when it is configured, into
//! literal parts and placeholders, so that rendering is one pass and a value containing
//! `<id>` is never substituted again.

use std::sync::Arc;

use crate::core::types::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Installation,
    User,
    Field,
    Value,
    Id,
}

impl Placeholder {
    const ALL: [Placeholder; 5] = [
        Placeholder::Installation,
        Placeholder::User,
        Placeholder::Field,
        Placeholder::Value,
        Placeholder::Id,
    ];

    fn token(self) -> &'static str {
        match self {
            Placeholder::Installation => "<installation>",
            Placeholder::User => "<user>",
            Placeholder::Field => "<field>",
            Placeholder::Value => "<value>",
            Placeholder::Id => "<id>",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Slot(Placeholder),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// What each template may and must contain.
#[derive(Debug, Clone, Copy)]
pub struct TemplateRule {
    pub allowed: &'static [Placeholder],
    pub required: &'static [Placeholder],
}

impl Template {
    /// Parses `source`; an unknown `<...>` placeholder, a placeholder the rule does not allow
    /// or a missing required one is an error that says which.
    pub fn parse(source: &str, rule: TemplateRule) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while !rest.is_empty() {
            let found = Placeholder::ALL
                .into_iter()
                .find_map(|slot| rest.strip_prefix(slot.token()).map(|after| (slot, after)));
            match found {
                Some((slot, after)) => {
                    if !rule.allowed.contains(&slot) {
                        return Err(format!(
                            "placeholder {} is not allowed here (allowed: {})",
                            slot.token(),
                            tokens(rule.allowed)
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Slot(slot));
                    rest = after;
                }
                None => {
                    if let Some(name) = misspelt_placeholder(rest) {
                        return Err(format!(
                            "unknown placeholder <{name}> (known: {})",
                            tokens(&Placeholder::ALL)
                        ));
                    }
                    let mut chars = rest.chars();
                    if let Some(c) = chars.next() {
                        literal.push(c);
                    }
                    rest = chars.as_str();
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        for slot in rule.required {
            if !parts.contains(&Part::Slot(*slot)) {
                return Err(format!("template must contain {}", slot.token()));
            }
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The key for the given placeholder values; `value_of` is asked only for the
    /// placeholders the template holds.
    pub fn render<'v>(&self, value_of: impl Fn(Placeholder) -> &'v [u8]) -> Bytes {
        let mut key = Vec::with_capacity(self.source.len() + 16);
        self.render_into(&mut key, value_of);
        key
    }

    /// Whether the template holds `slot`.
    pub fn has(&self, slot: Placeholder) -> bool {
        self.parts.contains(&Part::Slot(slot))
    }

    /// The inverse of `render` for one unknown placeholder: when `key` is this template
    /// with `known` placeholders filled in, the bytes standing for `unknown`. `None` when
    /// the key does not fit, or `unknown` appears other than once.
    pub fn capture<'v>(
        &self,
        key: &[u8],
        unknown: Placeholder,
        known: impl Fn(Placeholder) -> &'v [u8],
    ) -> Option<Bytes> {
        let (before, after) = self.around(unknown, known)?;
        strip(key, &before, &after).map(<[u8]>::to_vec)
    }

    /// The rendered text before and after the one `unknown` placeholder, for capturing it
    /// from many keys (see `capture`).
    pub fn around<'v>(
        &self,
        unknown: Placeholder,
        known: impl Fn(Placeholder) -> &'v [u8],
    ) -> Option<(Bytes, Bytes)> {
        let at = self
            .parts
            .iter()
            .position(|part| *part == Part::Slot(unknown))?;
        let (before, after) = self.parts.split_at(at);
        let after = after.get(1..)?;
        if after.contains(&Part::Slot(unknown)) {
            return None;
        }
        let fill = |parts: &[Part]| -> Bytes {
            let mut bytes = Vec::new();
            for part in parts {
                match part {
                    Part::Literal(text) => bytes.extend_from_slice(text.as_bytes()),
                    Part::Slot(slot) => bytes.extend_from_slice(known(*slot)),
                }
            }
            bytes
        };
        Some((fill(before), fill(after)))
    }

    /// `render` into a reused buffer, for the per-meeting hot path.
    pub fn render_into<'v>(&self, key: &mut Bytes, value_of: impl Fn(Placeholder) -> &'v [u8]) {
        key.clear();
        for part in &self.parts {
            match part {
                Part::Literal(text) => key.extend_from_slice(text.as_bytes()),
                Part::Slot(slot) => key.extend_from_slice(value_of(*slot)),
            }
        }
    }
}

/// `key` without `before` and `after`, when it has both.
pub fn strip<'k>(key: &'k [u8], before: &[u8], after: &[u8]) -> Option<&'k [u8]> {
    key.strip_prefix(before)?.strip_suffix(after)
}

/// The templates of every key a query reads, as configured when the query started (see
/// [`KeyRole`] for each).
#[derive(Debug, Clone)]
pub struct KeyTemplates {
    pub filter: Arc<Template>,
    pub meetings: Arc<Template>,
    pub clients: Arc<Template>,
    pub meeting: Arc<Template>,
    pub sort: Arc<Template>,
    pub sort_member: Arc<Template>,
}

impl KeyTemplates {
    /// Whether both hold the very same configured templates (a CONFIG SET makes new ones).
    pub fn same_as(&self, other: &KeyTemplates) -> bool {
        Arc::ptr_eq(&self.filter, &other.filter)
            && Arc::ptr_eq(&self.meetings, &other.meetings)
            && Arc::ptr_eq(&self.clients, &other.clients)
            && Arc::ptr_eq(&self.meeting, &other.meeting)
            && Arc::ptr_eq(&self.sort, &other.sort)
            && Arc::ptr_eq(&self.sort_member, &other.sort_member)
    }
}

use Placeholder::{Field, Id, Installation, User, Value};

/// The role of each configured template: the setting it comes from, its default, and the
/// placeholders it may and must hold. Settings, key checks and errors all name a template
/// through its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// `crm.filter-key`: SET of meeting ids per installation, field and value.
    Filter,
    /// `crm.meetings-key`: SET of all meeting ids of an installation.
    Meetings,
    /// `crm.clients-key`: SET of the client ids a user may see.
    Clients,
    /// `crm.meeting-key`: HASH of one meeting.
    Meeting,
    /// `crm.sort-key`: ZSET of one sort field's values.
    Sort,
    /// `crm.sort-member`: a meeting's member name in the sort ZSET (not a key).
    SortMember,
}

impl KeyRole {
    /// The setting's name without the `crm.` prefix.
    pub const fn setting(self) -> &'static str {
        match self {
            KeyRole::Filter => "filter-key",
            KeyRole::Meetings => "meetings-key",
            KeyRole::Clients => "clients-key",
            KeyRole::Meeting => "meeting-key",
            KeyRole::Sort => "sort-key",
            KeyRole::SortMember => "sort-member",
        }
    }

    /// The proof of concept's key names.
    pub const fn default_template(self) -> &'static str {
        match self {
            KeyRole::Filter => "meeting_<field>:<value>_ins_<installation>",
            KeyRole::Meetings => "meetings_ins_<installation>",
            KeyRole::Clients => "clients_for_user:<user>",
            KeyRole::Meeting | KeyRole::SortMember => "meeting:<id>",
            KeyRole::Sort => "meeting_<field>",
        }
    }

    pub const fn rule(self) -> TemplateRule {
        match self {
            KeyRole::Filter => TemplateRule {
                allowed: &[Installation, Field, Value],
                required: &[Field, Value],
            },
            KeyRole::Meetings => TemplateRule {
                allowed: &[Installation],
                required: &[],
            },
            KeyRole::Clients => TemplateRule {
                allowed: &[Installation, User],
                required: &[User],
            },
            KeyRole::Meeting | KeyRole::SortMember => TemplateRule {
                allowed: &[Installation, Id],
                required: &[Id],
            },
            KeyRole::Sort => TemplateRule {
                allowed: &[Installation, Field],
                required: &[Field],
            },
        }
    }

    /// Parses a template for this role.
    pub fn parse(self, source: &str) -> Result<Template, String> {
        Template::parse(source, self.rule())
    }
}

/// `name` when `text` starts with `<name>` (lower-case letters and `_`) that is no known
/// placeholder: most likely a typo, which would silently merge keys if taken literally.
fn misspelt_placeholder(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('<')?;
    let end = inner.find('>')?;
    let name = inner.get(..end)?;
    let word = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    word.then_some(name)
}

fn tokens(slots: &[Placeholder]) -> String {
    let names: Vec<&str> = slots.iter().map(|slot| slot.token()).collect();
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTER: TemplateRule = KeyRole::Filter.rule();

    #[test]
    fn renders_in_one_pass() {
        let template =
            Template::parse("meeting_<field>:<value>_ins_<installation>", FILTER).unwrap();
        let key = template.render(|slot| match slot {
            Installation => b"10",
            Field => b"type",
            Value => b"<installation>",
            _ => b"?",
        });
        assert_eq!(key, b"meeting_type:<installation>_ins_10");
    }

    #[test]
    fn hash_tags_are_literals_and_misspelt_placeholders_refused() {
        let template = Template::parse("{<installation>}:m_<field>:<value>:<1>", FILTER).unwrap();
        let key = template.render(|slot| match slot {
            Installation => b"7",
            Field => b"f",
            Value => b"v",
            _ => b"?",
        });
        assert_eq!(key, b"{7}:m_f:v:<1>");
        assert_eq!(
            Template::parse("{<instalation>}:m_<field>:<value>", FILTER).unwrap_err(),
            "unknown placeholder <instalation> (known: <installation> <user> <field> <value> <id>)"
        );
    }

    #[test]
    fn capture_inverts_render() {
        let template =
            Template::parse("meeting_<field>:<value>_ins_<installation>", FILTER).unwrap();
        let known = |slot| match slot {
            Installation => &b"10"[..],
            Field => b"type",
            _ => b"",
        };
        assert_eq!(
            template.capture(b"meeting_type:email_ins_10", Value, known),
            Some(b"email".to_vec())
        );
        assert_eq!(
            template.capture(b"meeting_type:x_ins_2_ins_10", Value, known),
            Some(b"x_ins_2".to_vec())
        );
        assert_eq!(
            template.capture(b"meeting_type:email_ins_110", Value, known),
            None
        );
        assert_eq!(
            template.capture(b"meeting_status:open_ins_10", Value, known),
            None
        );
    }

    #[test]
    fn rules_are_enforced() {
        assert_eq!(
            Template::parse("meeting_<field>_<user>:<value>", FILTER).unwrap_err(),
            "placeholder <user> is not allowed here (allowed: <installation> <field> <value>)"
        );
        assert_eq!(
            Template::parse("meeting_<field>", FILTER).unwrap_err(),
            "template must contain <value>"
        );
    }
}
