//! Command info on Redis 7.0 and later: key specs, arguments and documentation through the
//! raw `RedisModule_SetCommandInfo` (the crate's `#[command]` macro needs Redis 7.2), and
//! ACL categories. The types describe a command; `command::spec` holds the table.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::ptr;

use redis_module::{raw, Context};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// The routing key (the installation).
    Key,
    Text,
    Integer,
    /// A keyword alone (`ASC`).
    PureToken,
    /// A group of arguments after a token (`FILTER <field> <value>`).
    Block,
    /// One of the sub-arguments.
    OneOf,
}

#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgKind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
    /// Each repetition starts with the token again (`FILTER a b FILTER c d`).
    pub multiple_token: bool,
    pub args: &'static [Arg],
}

impl Arg {
    pub const fn new(name: &'static str, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            multiple_token: false,
            args: &[],
        }
    }
    pub const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
    pub const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    pub const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
    /// Repeatable, the token before each repetition.
    pub const fn multiple_token(mut self) -> Arg {
        self.multiple = true;
        self.multiple_token = true;
        self
    }
    pub const fn of(mut self, args: &'static [Arg]) -> Arg {
        self.args = args;
        self
    }
}

/// Everything the server knows about one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo {
    pub name: &'static str,
    /// Flags for `RedisModule_CreateCommand`.
    pub flags: &'static str,
    /// Negative: at least that many words, the command name included.
    pub arity: i32,
    /// Whether the command writes (ACL category `@write`, a read-write key spec).
    pub writes: bool,
    pub summary: &'static str,
    pub complexity: &'static str,
    pub since: &'static str,
    pub args: &'static [Arg],
}

/// Adds an ACL category when the server supports it (Redis 7.4 and later); returns
/// whether it did.
pub fn add_acl_category(ctx: &Context, category: &str) -> bool {
    let Ok(name) = CString::new(category) else {
        return false;
    };
    // SAFETY: called from OnLoad with the module's context.
    match unsafe { raw::RedisModule_AddACLCategory } {
        Some(add) => {
            let status = unsafe { add(ctx.ctx, name.as_ptr()) };
            status == raw::REDISMODULE_OK as c_int
        }
        None => false,
    }
}

/// Tells the server the command's arity, key spec, documentation and ACL categories
/// (`read` or `write`, and `extra_category` when given).
pub fn describe(
    ctx: &Context,
    info: &CommandInfo,
    extra_category: Option<&str>,
) -> Result<(), String> {
    let failure = |what: &str| format!("cannot set the {what} of {}", info.name);
    let mut strings = Strings::default();
    let name = strings.text(info.name);
    // SAFETY: the function table is loaded; the name is a live C string.
    let command =
        unsafe { raw::RedisModule_GetCommand.ok_or_else(|| failure("command"))?(ctx.ctx, name) };
    if command.is_null() {
        return Err(failure("command"));
    }

    let key_flags = if info.writes {
        raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE
    } else {
        raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS
    } | raw::REDISMODULE_CMD_KEY_NOT_KEY;
    let mut key_specs = [
        raw::RedisModuleCommandKeySpec {
            notes: strings.text("the installation: routes the command, is not itself a key"),
            flags: u64::from(key_flags),
            begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
            bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
            },
            find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
            fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
                range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                    lastkey: 0,
                    keystep: 1,
                    limit: 0,
                },
            },
        },
        // SAFETY: an all-zero key spec is the terminator the API expects.
        unsafe { std::mem::zeroed() },
    ];
    let mut arg_arena = Vec::new();
    let args = lower_args(info.args, &mut strings, &mut arg_arena);
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let command_info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: strings.text(info.summary),
        complexity: strings.text(info.complexity),
        since: strings.text(info.since),
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: info.arity,
        key_specs: key_specs.as_mut_ptr(),
        args,
    };
    // SAFETY: every pointer in `command_info` lives until this call returns; the server
    // copies what it keeps.
    let status = unsafe {
        raw::RedisModule_SetCommandInfo.ok_or_else(|| failure("info"))?(command, &command_info)
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err(failure("info"));
    }

    // Redis 7.0 has no per-command categories: there the `readonly`/`write` flags give
    // `@read`/`@write`.
    if let Some(set_categories) = unsafe { raw::RedisModule_SetCommandACLCategories } {
        let base = if info.writes { "write" } else { "read" };
        let categories = match extra_category {
            Some(extra) => format!("{base} {extra}"),
            None => base.to_string(),
        };
        let categories = strings.text(&categories);
        // SAFETY: a live command and C string.
        if unsafe { set_categories(command, categories) } != raw::REDISMODULE_OK as c_int {
            return Err(failure("ACL categories"));
        }
    }
    Ok(())
}

/// C strings that must outlive the raw structures pointing at them.
#[derive(Default)]
struct Strings(Vec<CString>);

impl Strings {
    fn text(&mut self, text: &str) -> *const c_char {
        let Ok(text) = CString::new(text) else {
            return ptr::null();
        };
        let pointer = text.as_ptr();
        // Moving the CString into the Vec does not move its heap buffer.
        self.0.push(text);
        pointer
    }
}

/// The raw, zero-terminated argument array for `args`; nested arrays live in `arena`.
fn lower_args(
    args: &[Arg],
    strings: &mut Strings,
    arena: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> *mut raw::RedisModuleCommandArg {
    if args.is_empty() {
        return ptr::null_mut();
    }
    let mut lowered = Vec::with_capacity(args.len() + 1);
    for arg in args {
        let subargs = lower_args(arg.args, strings, arena);
        let kind = match arg.kind {
            ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
            ArgKind::Text => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
            ArgKind::PureToken => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
            ArgKind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
            ArgKind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
        };
        let mut flags = raw::REDISMODULE_CMD_ARG_NONE;
        if arg.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
        }
        if arg.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
        }
        if arg.multiple_token {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE_TOKEN;
        }
        lowered.push(raw::RedisModuleCommandArg {
            name: strings.text(arg.name),
            type_: kind,
            key_spec_index: if arg.kind == ArgKind::Key { 0 } else { -1 },
            token: arg.token.map_or(ptr::null(), |token| strings.text(token)),
            summary: ptr::null(),
            since: ptr::null(),
            flags: flags as c_int,
            deprecated_since: ptr::null(),
            subargs,
            display_text: ptr::null(),
        });
    }
    // SAFETY: an all-zero argument is the terminator the API expects.
    lowered.push(unsafe { std::mem::zeroed() });
    let pointer = lowered.as_mut_ptr();
    // Moving the Vec into the arena does not move its heap buffer.
    arena.push(lowered);
    pointer
}

/// The handler of the command registered by [`register_debug_command`].
#[cfg(debug_assertions)]
static DEBUG_HANDLER: std::sync::OnceLock<
    fn(&Context, Vec<redis_module::RedisString>) -> redis_module::RedisResult,
> = std::sync::OnceLock::new();

/// Registers one command outside the `redis_module!` list (debug builds only: the
/// containment test's `CRM.DEBUG.PANIC`). Only from OnLoad.
#[cfg(debug_assertions)]
pub fn register_debug_command(
    ctx: &Context,
    name: &str,
    handler: fn(&Context, Vec<redis_module::RedisString>) -> redis_module::RedisResult,
) -> Result<(), String> {
    fn dispatch(ctx: &Context, args: Vec<redis_module::RedisString>) -> redis_module::RedisResult {
        match DEBUG_HANDLER.get() {
            Some(handler) => handler(ctx, args),
            None => Err(redis_module::RedisError::Str("no handler")),
        }
    }
    /// # Safety
    /// `ctx` is the module's context during OnLoad (the macro calls the raw API).
    unsafe fn create(ctx: *mut raw::RedisModuleCtx, name: &str) -> c_int {
        redis_module::redis_command!(ctx, name, dispatch, "", 0, 0, 0, "");
        raw::REDISMODULE_OK as c_int
    }
    let _ = DEBUG_HANDLER.set(handler);
    // SAFETY: called from OnLoad with the module's context.
    if unsafe { create(ctx.ctx, name) } != raw::REDISMODULE_OK as c_int {
        return Err(format!("cannot create {name}"));
    }
    Ok(())
}
