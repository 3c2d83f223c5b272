//! Module configurations (`CONFIG GET/SET crm.*`, `redis.conf`, `loadmodule` arguments):
//! the key templates and the page size limit. A template is parsed and checked when it is
//! set, so a bad one is refused by CONFIG SET instead of surfacing in a query.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redis_module::configuration::{
    register_i64_configuration, register_string_configuration, ConfigurationContext,
    ConfigurationFlags, ConfigurationValue,
};
use redis_module::{Context, RedisError, RedisString};

use crate::error::CrmError;
use crate::store::keys::{self, KeyTemplates, Template, TemplateRule};

/// One key template setting. Redis sets the default (or the `loadmodule` argument) through
/// `set` when the module loads, so the value is `None` only before that.
pub struct TemplateSetting {
    pub name: &'static str,
    pub default: &'static str,
    rule: TemplateRule,
    current: RwLock<Option<Arc<Template>>>,
}

impl TemplateSetting {
    const fn new(name: &'static str, default: &'static str, rule: TemplateRule) -> Self {
        TemplateSetting {
            name,
            default,
            rule,
            current: RwLock::new(None),
        }
    }

    /// Parses and stores a new template; the message says what is wrong with a bad one.
    fn assign(&self, source: &[u8]) -> Result<(), String> {
        let source = std::str::from_utf8(source)
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or_else(|| format!("crm.{} must be UTF-8 text without NUL bytes", self.name))?;
        let template = Template::parse(source, self.rule)
            .map_err(|reason| format!("crm.{}: {reason}", self.name))?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(template));
        Ok(())
    }

    fn current(&self) -> Result<Arc<Template>, CrmError> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .clone()
            .ok_or_else(|| CrmError::Internal(format!("crm.{} is not loaded", self.name)))
    }
}

impl ConfigurationValue<RedisString> for TemplateSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let source = current
            .as_ref()
            .map_or(self.default, |template| template.source());
        RedisString::create_from_slice(std::ptr::null_mut(), source.as_bytes())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        self.assign(value.as_slice()).map_err(RedisError::String)
    }
}

pub static FILTER_KEY: TemplateSetting = TemplateSetting::new(
    "filter-key",
    "meeting_<field>:<value>_ins_<installation>",
    keys::FILTER_KEY,
);
pub static MEETINGS_KEY: TemplateSetting = TemplateSetting::new(
    "meetings-key",
    "meetings_ins_<installation>",
    keys::MEETINGS_KEY,
);
pub static CLIENTS_KEY: TemplateSetting =
    TemplateSetting::new("clients-key", "clients_for_user:<user>", keys::CLIENTS_KEY);
pub static MEETING_KEY: TemplateSetting =
    TemplateSetting::new("meeting-key", "meeting:<id>", keys::MEETING_KEY);
pub static SORT_KEY: TemplateSetting =
    TemplateSetting::new("sort-key", "meeting_<field>", keys::SORT_KEY);
pub static SORT_MEMBER: TemplateSetting =
    TemplateSetting::new("sort-member", "meeting:<id>", keys::SORT_MEMBER);

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

/// Registers every setting with the server, loads the values of `redis.conf` (or the
/// defaults), then applies the `loadmodule` arguments on top.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    register_i64_configuration(
        ctx,
        "max-page",
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
    // SAFETY: called once from OnLoad with the module's context, after every registration.
    let load_configs = unsafe { redis_module::raw::RedisModule_LoadConfigs }
        .ok_or("this server has no module configurations (Redis 7.0 or later is needed)")?;
    if unsafe { load_configs(ctx.ctx) } != redis_module::raw::REDISMODULE_OK as i32 {
        return Err("the crm.* values in the configuration file are invalid".to_string());
    }
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
        if name == "max-page" {
            let page = value
                .parse_integer()
                .ok()
                .filter(|page| (1..=MAX_PAGE_LIMIT).contains(page))
                .ok_or_else(|| format!("max-page must be an integer from 1 to {MAX_PAGE_LIMIT}"))?;
            MAX_PAGE.store(page, Ordering::Relaxed);
            continue;
        }
        let setting = TEMPLATES
            .iter()
            .find(|setting| setting.name == name)
            .ok_or_else(|| format!("unknown configuration '{name}'"))?;
        setting.assign(value.as_slice())?;
    }
    Ok(())
}

static TEMPLATES: [&TemplateSetting; 6] = [
    &FILTER_KEY,
    &MEETINGS_KEY,
    &CLIENTS_KEY,
    &MEETING_KEY,
    &SORT_KEY,
    &SORT_MEMBER,
];

pub fn max_page() -> u64 {
    u64::try_from(MAX_PAGE.load(Ordering::Relaxed)).unwrap_or(0)
}
