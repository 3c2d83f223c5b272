//! Module configurations (`CONFIG GET/SET crm.*`, `redis.conf`, `loadmodule` arguments):
//! the key templates and the page size limit. A template is parsed and checked when it is
//! set, so a bad one is refused by CONFIG SET instead of surfacing in a query.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis_module::configuration::{
    register_bool_configuration, register_i64_configuration, register_string_configuration,
    ConfigurationContext, ConfigurationFlags, ConfigurationValue,
};
use redis_module::{Context, RedisError, RedisString};

use crate::core::index::plan::{parse_plan_setting, PlanSetting};
use crate::core::query::QueryFields;
use crate::core::types::Bytes;
use crate::core::write::Schema;
use crate::error::CrmError;
use crate::ffi::hooks::DataEvent;
use crate::ffi::load_configs;
use crate::ffi::string::SharedString;
use crate::store::index;
use crate::store::index::preload::Preload;
use crate::store::keys::{KeyRole, KeyTemplates, Template};

/// A text setting parsed into `T` when it is set. Redis sets the default (or the value in
/// `redis.conf`) through `set` when the module loads, so `current` is `None` only before.
pub struct TextSetting<T> {
    pub name: &'static str,
    pub default: &'static str,
    parse: fn(&str) -> Result<T, String>,
    current: RwLock<Option<Current<T>>>,
}

/// A setting's value: as parsed, and as the string CONFIG GET shows.
struct Current<T> {
    value: Arc<T>,
    shown: SharedString,
}

impl<T> TextSetting<T> {
    const fn new(
        name: &'static str,
        default: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Self {
        TextSetting {
            name,
            default,
            parse,
            current: RwLock::new(None),
        }
    }

    /// Parses and stores a new value; the message says what is wrong with a bad one.
    fn assign(&self, source: &[u8]) -> Result<(), String> {
        let source = std::str::from_utf8(source)
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or_else(|| format!("crm.{} must be UTF-8 text without NUL bytes", self.name))?;
        let value =
            (self.parse)(source).map_err(|reason| format!("crm.{}: {reason}", self.name))?;
        let shown = SharedString::new(source.as_bytes()).map_err(|error| error.to_string())?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Current {
            value: Arc::new(value),
            shown,
        });
        Ok(())
    }

    /// Drops the value (module unload), so that nothing the module made outlives it.
    fn release(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn current(&self) -> Result<Arc<T>, CrmError> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .map(|current| Arc::clone(&current.value))
            .ok_or_else(|| CrmError::Internal(format!("crm.{} is not loaded", self.name)))
    }
}

impl<T: Send + Sync> ConfigurationValue<RedisString> for TextSetting<T> {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some(current) => current.shown.lend(),
            // Before the module loaded its settings (not seen in practice): a new string.
            None => RedisString::create_from_slice(std::ptr::null_mut(), self.default.as_bytes()),
        }
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        self.assign(value.as_slice()).map_err(RedisError::String)
    }
}

/// The key templates, each named by its role.
pub static FILTER_KEY: TextSetting<Template> =
    template(KeyRole::Filter, |t| KeyRole::Filter.parse(t));
pub static MEETINGS_KEY: TextSetting<Template> =
    template(KeyRole::Meetings, |t| KeyRole::Meetings.parse(t));
pub static CLIENTS_KEY: TextSetting<Template> =
    template(KeyRole::Clients, |t| KeyRole::Clients.parse(t));
pub static MEETING_KEY: TextSetting<Template> =
    template(KeyRole::Meeting, |t| KeyRole::Meeting.parse(t));
pub static SORT_KEY: TextSetting<Template> = template(KeyRole::Sort, |t| KeyRole::Sort.parse(t));
pub static SORT_MEMBER: TextSetting<Template> =
    template(KeyRole::SortMember, |t| KeyRole::SortMember.parse(t));

const fn template(
    role: KeyRole,
    parse: fn(&str) -> Result<Template, String>,
) -> TextSetting<Template> {
    TextSetting::new(role.setting(), role.default_template(), parse)
}

/// `crm.filter-fields`: hash fields with one SET per value, kept by the write commands.
pub static FILTER_FIELDS: TextSetting<Vec<Bytes>> =
    TextSetting::new("filter-fields", "type status", parse_field_list);
/// `crm.sort-fields`: hash fields with a ZSET of their value, kept by the write commands.
pub static SORT_FIELDS: TextSetting<Vec<Bytes>> =
    TextSetting::new("sort-fields", "date", parse_field_list);
/// `crm.hash-sort-fields`: hash fields SORTBY may name without a ZSET, sorted from the
/// meeting hash's field (the seed's `SORT BY meeting:*->field`).
pub static HASH_SORT_FIELDS: TextSetting<Vec<Bytes>> =
    TextSetting::new("hash-sort-fields", "", parse_field_list);

/// `crm.index-plan`: how queries use the index (`auto`, or one plan forced, or `keyspace`
/// to bypass it), for comparing plans and for tests.
pub static INDEX_PLAN: TextSetting<PlanSetting> =
    TextSetting::new("index-plan", "auto", parse_plan_setting);

/// The names of the numeric and yes/no settings (without `crm.`).
const MAX_PAGE_NAME: &str = "max-page";
const INDEX_NAME: &str = "index";
const INDEX_MAX_MEMORY_NAME: &str = "index-max-memory";
const INDEX_WAIT_NAME: &str = "index-wait-ms";

/// `crm.index`: whether queries are answered from the in-memory index.
pub static INDEX: AtomicBool = AtomicBool::new(true);
/// `crm.index-max-memory`: the bytes all indexes may hold together; an installation whose
/// index would pass it is answered from the keyspace.
pub static INDEX_MAX_MEMORY: AtomicI64 = AtomicI64::new(DEFAULT_INDEX_MAX_MEMORY);
pub const DEFAULT_INDEX_MAX_MEMORY: i64 = 1 << 30;
/// `crm.index-wait-ms`: how long a query waits for its index to load (its client blocked,
/// the server free) before it is answered `LOADING ...`.
pub static INDEX_WAIT_MS: AtomicI64 = AtomicI64::new(DEFAULT_INDEX_WAIT_MS);
pub const DEFAULT_INDEX_WAIT_MS: i64 = 10_000;
const MAX_INDEX_WAIT_MS: i64 = 3_600_000;

/// `crm.index-preload`: installations whose index is built after every load (a restart,
/// a replica's sync, DEBUG RELOAD) and when the setting changes, without waiting for a
/// query: none (empty), space-separated installations, or `all` (every installation
/// whose set of meetings exists in database 0).
pub static INDEX_PRELOAD: TextSetting<Preload> =
    TextSetting::new("index-preload", "", parse_preload);

fn parse_preload(text: &str) -> Result<Preload, String> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        [] => Ok(Preload::Installations(Vec::new())),
        [all] if all.eq_ignore_ascii_case("all") => Ok(Preload::All),
        _ if words.iter().any(|word| word.eq_ignore_ascii_case("all")) => {
            Err("'all' stands alone in crm.index-preload".to_string())
        }
        _ => Ok(Preload::Installations(
            words.iter().map(|word| word.as_bytes().to_vec()).collect(),
        )),
    }
}

/// Field names separated by spaces, each once. Other separators (commas, tabs, newlines)
/// and control characters are refused: `type,status` would be one field of that name.
fn parse_field_list(text: &str) -> Result<Vec<Bytes>, String> {
    if let Some(bad) = text
        .chars()
        .find(|c| matches!(c, ',' | ';') || c.is_control())
    {
        return Err(format!(
            "fields are separated by spaces only, and a field name holds no {:?}: \
             write \"type status\"",
            bad
        ));
    }
    let mut fields: Vec<Bytes> = Vec::new();
    for name in text.split(' ').filter(|name| !name.is_empty()) {
        if fields.iter().any(|known| known == name.as_bytes()) {
            return Err(format!("field '{name}' is listed twice"));
        }
        fields.push(name.as_bytes().to_vec());
    }
    Ok(fields)
}

/// `crm.max-page`: the largest LIMIT count a query may ask for.
pub static MAX_PAGE: AtomicI64 = AtomicI64::new(DEFAULT_MAX_PAGE);
pub const DEFAULT_MAX_PAGE: i64 = 1000;
pub const MAX_PAGE_LIMIT: i64 = 1_000_000;

/// The templates in force now; a query takes them once, so a CONFIG SET never changes
/// key names in the middle of one.
pub fn key_templates() -> Result<KeyTemplates, CrmError> {
    Ok(KeyTemplates {
        filter: FILTER_KEY.current()?,
        meetings: MEETINGS_KEY.current()?,
        clients: CLIENTS_KEY.current()?,
        meeting: MEETING_KEY.current()?,
        sort: SORT_KEY.current()?,
        sort_member: SORT_MEMBER.current()?,
    })
}

/// Frees every setting's value when the server unloads the module (MODULE UNLOAD; Valkey
/// also unloads modules at shutdown), so that valgrind sees nothing of ours left behind.
pub fn release() {
    TEMPLATES.iter().for_each(|setting| setting.release());
    FIELD_LISTS.iter().for_each(|setting| setting.release());
    INDEX_PLAN.release();
    INDEX_PRELOAD.release();
}

/// Registers every setting with the server, loads the values of `redis.conf` (or the
/// defaults), then applies the `loadmodule` arguments on top.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    register_i64_configuration(
        ctx,
        MAX_PAGE_NAME,
        &MAX_PAGE,
        DEFAULT_MAX_PAGE,
        1,
        MAX_PAGE_LIMIT,
        ConfigurationFlags::DEFAULT,
        None,
    );
    for setting in TEMPLATES {
        register_string_configuration(
            ctx,
            setting.name,
            setting,
            setting.default,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    for setting in FIELD_LISTS {
        register_string_configuration(
            ctx,
            setting.name,
            setting,
            setting.default,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    register_string_configuration(
        ctx,
        INDEX_PLAN.name,
        &INDEX_PLAN,
        INDEX_PLAN.default,
        ConfigurationFlags::DEFAULT,
        None,
    );
    register_bool_configuration(
        ctx,
        INDEX_NAME,
        &INDEX,
        true,
        ConfigurationFlags::DEFAULT,
        Some(Box::new(|_: &ConfigurationContext, _: &str, on| {
            // Off: the indexes go now (freed in slices), not at the next query. On: the
            // preloaded ones are built again, as after a load.
            if on.load(Ordering::Relaxed) {
                preload();
            } else {
                index::drop_all();
            }
        })),
    );
    register_i64_configuration(
        ctx,
        INDEX_MAX_MEMORY_NAME,
        &INDEX_MAX_MEMORY,
        DEFAULT_INDEX_MAX_MEMORY,
        0,
        i64::MAX,
        ConfigurationFlags::MEMORY,
        None,
    );
    register_i64_configuration(
        ctx,
        INDEX_WAIT_NAME,
        &INDEX_WAIT_MS,
        DEFAULT_INDEX_WAIT_MS,
        0,
        MAX_INDEX_WAIT_MS,
        ConfigurationFlags::DEFAULT,
        None,
    );
    register_string_configuration(
        ctx,
        INDEX_PRELOAD.name,
        &INDEX_PRELOAD,
        INDEX_PRELOAD.default,
        ConfigurationFlags::DEFAULT,
        Some(Box::new(|_: &ConfigurationContext, _: &str, _| preload())),
    );
    load_configs(ctx)?;
    apply_module_args(args)
}

/// `loadmodule <path> <name> <value> ...`: each pair sets one configuration, under its name
/// without the `crm.` prefix (`loadmodule crm.so max-page 500 meeting-key m:<id>`).
fn apply_module_args(args: &[RedisString]) -> Result<(), String> {
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err("arguments must be name value pairs".to_string());
        };
        let name = name.to_string_lossy();
        if name == MAX_PAGE_NAME {
            let page = value
                .parse_integer()
                .ok()
                .filter(|page| (1..=MAX_PAGE_LIMIT).contains(page))
                .ok_or_else(|| format!("max-page must be an integer from 1 to {MAX_PAGE_LIMIT}"))?;
            MAX_PAGE.store(page, Ordering::Relaxed);
            continue;
        }
        if name == INDEX_NAME {
            let on = match value.to_string_lossy().to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err("index must be yes or no".to_string()),
            };
            INDEX.store(on, Ordering::Relaxed);
            continue;
        }
        if name == INDEX_MAX_MEMORY_NAME {
            let bytes = value
                .parse_integer()
                .ok()
                .filter(|bytes| *bytes >= 0)
                .ok_or("index-max-memory must be a number of bytes")?;
            INDEX_MAX_MEMORY.store(bytes, Ordering::Relaxed);
            continue;
        }
        if name == INDEX_WAIT_NAME {
            let millis = value
                .parse_integer()
                .ok()
                .filter(|millis| (0..=MAX_INDEX_WAIT_MS).contains(millis))
                .ok_or_else(|| {
                    format!(
                        "index-wait-ms must be a number of milliseconds up to {MAX_INDEX_WAIT_MS}"
                    )
                })?;
            INDEX_WAIT_MS.store(millis, Ordering::Relaxed);
            continue;
        }
        if name == INDEX_PLAN.name {
            INDEX_PLAN.assign(value.as_slice())?;
            continue;
        }
        if name == INDEX_PRELOAD.name {
            INDEX_PRELOAD.assign(value.as_slice())?;
            continue;
        }
        if let Some(setting) = TEMPLATES.iter().find(|setting| setting.name == name) {
            setting.assign(value.as_slice())?;
        } else if let Some(setting) = FIELD_LISTS.iter().find(|setting| setting.name == name) {
            setting.assign(value.as_slice())?;
        } else {
            return Err(format!("unknown configuration '{name}'"));
        }
    }
    Ok(())
}

static TEMPLATES: [&TextSetting<Template>; 6] = [
    &FILTER_KEY,
    &MEETINGS_KEY,
    &CLIENTS_KEY,
    &MEETING_KEY,
    &SORT_KEY,
    &SORT_MEMBER,
];
static FIELD_LISTS: [&TextSetting<Vec<Bytes>>; 3] =
    [&FILTER_FIELDS, &SORT_FIELDS, &HASH_SORT_FIELDS];

/// The indexed fields in force now.
pub fn schema() -> Result<Schema, CrmError> {
    Ok(Schema {
        filter_fields: FILTER_FIELDS.current()?.to_vec(),
        sort_fields: SORT_FIELDS.current()?.to_vec(),
    })
}

/// The fields queries may name, in force now.
pub fn query_fields() -> Result<QueryFields, CrmError> {
    Ok(QueryFields {
        filter: FILTER_FIELDS.current()?,
        sort: SORT_FIELDS.current()?,
        hash_sort: HASH_SORT_FIELDS.current()?,
    })
}

pub fn max_page() -> u64 {
    u64::try_from(MAX_PAGE.load(Ordering::Relaxed)).unwrap_or(0)
}

/// `crm.index`: whether queries may use the in-memory index at all.
pub fn index_enabled() -> bool {
    INDEX.load(Ordering::Relaxed)
}

/// Whether queries may use the index, and how.
pub fn index_plan() -> PlanSetting {
    if !index_enabled() {
        return PlanSetting::Keyspace;
    }
    INDEX_PLAN.current().map_or(PlanSetting::Auto, |plan| *plan)
}

/// How long a query waits for its loading index (`crm.index-wait-ms`); 0 answers
/// `LOADING ...` at once.
pub fn index_wait() -> Duration {
    Duration::from_millis(u64::try_from(INDEX_WAIT_MS.load(Ordering::Relaxed)).unwrap_or(0))
}

/// The installations to build after a load (`crm.index-preload`).
pub fn index_preload() -> Preload {
    INDEX_PRELOAD
        .current()
        .map_or(Preload::Installations(Vec::new()), |preload| {
            (*preload).clone()
        })
}

/// Builds the indexes `crm.index-preload` names, in loading slices (the slices build none
/// while `crm.index` is `no`).
fn preload() {
    if let Ok(templates) = key_templates() {
        index::preload::start(index_preload(), templates);
    }
}

/// The data of the databases changed behind the module's back: every index goes; after a
/// load, the preloaded ones are built again.
pub fn on_data_event(event: DataEvent) {
    index::events::on_data_replaced();
    if event == DataEvent::Loaded {
        preload();
    }
}

pub fn index_max_memory() -> usize {
    usize::try_from(INDEX_MAX_MEMORY.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
}
