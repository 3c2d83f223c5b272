//! What the server is told about each command, declared in one place: flags, arity, ACL
//! categories, the key spec that routes it, and the documentation COMMAND DOCS shows.
//!
//! The installation argument is the routing key: declared with the NOT_KEY key-spec flag,
//! so that Redis Cluster routes the command by it while ACL does not check it as a key
//! (the module checks every key it derives itself). Registration uses the raw
//! `RedisModule_SetCommandInfo`, which Redis 7.0 has, rather than the crate's
//! `#[command]` macro, which needs Redis 7.2.

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
    pub args: &'static [Arg],
}

impl Arg {
    const fn new(name: &'static str, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            args: &[],
        }
    }
    const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
    const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
    const fn of(mut self, args: &'static [Arg]) -> Arg {
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

const INSTALLATION: Arg = Arg::new("installation", ArgKind::Key);
const ID: Arg = Arg::new("id", ArgKind::Text);

pub const MEETINGS: CommandInfo = CommandInfo {
    name: "crm.meetings",
    flags: "readonly",
    arity: -3,
    writes: false,
    summary: "Returns the total and one page of the meetings a user may see, filtered and sorted",
    complexity: "O(C + M) where C is the size of the FILTER sets read and M the number of candidate meetings, plus O(M log(offset+count)) to cut the page",
    since: "0.1.0",
    args: QUERY_ARGS,
};

/// The arguments of CRM.MEETINGS and CRM.EXPLAIN.
const QUERY_ARGS: &[Arg] = &[
    INSTALLATION,
    Arg::new("user", ArgKind::Text),
    Arg::new("filter", ArgKind::Block)
        .token("FILTER")
        .optional()
        .multiple()
        .of(&[
            Arg::new("field", ArgKind::Text),
            Arg::new("value", ArgKind::Text),
        ]),
    Arg::new("sortby", ArgKind::Block)
        .token("SORTBY")
        .optional()
        .of(&[
            Arg::new("field", ArgKind::Text),
            Arg::new("order", ArgKind::OneOf).optional().of(&[
                Arg::new("asc", ArgKind::PureToken).token("ASC"),
                Arg::new("desc", ArgKind::PureToken).token("DESC"),
            ]),
        ]),
    Arg::new("limit", ArgKind::Block)
        .token("LIMIT")
        .optional()
        .of(&[
            Arg::new("offset", ArgKind::Integer),
            Arg::new("count", ArgKind::Integer),
        ]),
    Arg::new("return", ArgKind::Block)
        .token("RETURN")
        .optional()
        .of(&[
            Arg::new("count", ArgKind::Integer),
            Arg::new("field", ArgKind::Text).multiple(),
        ]),
    Arg::new("format", ArgKind::OneOf)
        .token("FORMAT")
        .optional()
        .of(&[
            Arg::new("json", ArgKind::PureToken).token("JSON"),
            Arg::new("resp", ArgKind::PureToken).token("RESP"),
        ]),
];

pub const EXPLAIN: CommandInfo = CommandInfo {
    name: "crm.explain",
    flags: "readonly",
    arity: -3,
    writes: false,
    summary: "Runs a CRM.MEETINGS query and returns its plan: each step with its estimated and actual rows and its time",
    complexity: "The same as CRM.MEETINGS",
    since: "0.1.0",
    args: QUERY_ARGS,
};

pub const MEETING_SET: CommandInfo = CommandInfo {
    name: "crm.meeting.set",
    flags: "write deny-oom",
    arity: -5,
    writes: true,
    summary: "Creates or updates a meeting and moves it between its filter sets and sort indexes in one step",
    complexity: "O(F) where F is the number of fields given",
    since: "0.1.0",
    args: &[
        INSTALLATION,
        ID,
        Arg::new("data", ArgKind::Block)
            .multiple()
            .of(&[Arg::new("field", ArgKind::Text), Arg::new("value", ArgKind::Text)]),
    ],
};

pub const MEETING_DEL: CommandInfo = CommandInfo {
    name: "crm.meeting.del",
    flags: "write",
    arity: 3,
    writes: true,
    summary:
        "Deletes a meeting and removes it from its filter sets, sort indexes and installation set",
    complexity: "O(F) where F is the number of indexed fields",
    since: "0.1.0",
    args: &[INSTALLATION, ID],
};

pub const CHECK: CommandInfo = CommandInfo {
    name: "crm.check",
    flags: "readonly",
    arity: -2,
    writes: false,
    summary: "Audits an installation's sets and sort indexes against its meeting hashes, in bounded steps",
    complexity: "O(K + M * S) where K is the number of keys in the database, M the meetings of the installation and S its sets",
    since: "0.1.0",
    args: &[
        INSTALLATION,
        Arg::new("n", ArgKind::Integer).token("LIMIT").optional(),
    ],
};

pub const REPAIR: CommandInfo = CommandInfo {
    name: "crm.repair",
    flags: "write deny-oom",
    arity: 2,
    writes: true,
    summary: "Rebuilds an installation's sets and sort indexes from its meeting hashes, in bounded steps",
    complexity: "O(K + M * S) where K is the number of keys in the database, M the meetings of the installation and S its sets",
    since: "0.1.0",
    args: &[INSTALLATION],
};

pub const ALL: [CommandInfo; 6] = [MEETINGS, EXPLAIN, MEETING_SET, MEETING_DEL, CHECK, REPAIR];

/// The module's own ACL category, where the server has `RedisModule_AddACLCategory`.
pub const ACL_CATEGORY: &str = "crm";

/// Adds the `@crm` ACL category when the server supports it (Redis 7.4 and later);
/// returns whether it did.
pub fn add_acl_category(ctx: &Context) -> bool {
    let Ok(name) = CString::new(ACL_CATEGORY) else {
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

/// Tells the server the command's arity, key spec, documentation and ACL categories.
pub fn describe(ctx: &Context, info: &CommandInfo, with_crm_category: bool) -> Result<(), String> {
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
        let categories = if with_crm_category {
            format!("{base} {ACL_CATEGORY}")
        } else {
            base.to_string()
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
