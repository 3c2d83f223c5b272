//! The command table: each command's flags, arity, ACL categories, the key spec that routes
//! it, and the documentation COMMAND DOCS shows, declared in one place.
//!
//! The installation argument is the routing key: declared with the NOT_KEY key-spec flag,
//! so that Redis Cluster routes the command by it while ACL does not check it as a key
//! (the module checks every key it derives itself).

pub use crate::ffi::command_info::{Arg, ArgKind, CommandInfo};

const INSTALLATION: Arg = Arg::new("installation", ArgKind::Key);
const ID: Arg = Arg::new("id", ArgKind::Text);

pub const MEETINGS: CommandInfo = CommandInfo {
    name: "crm.meetings",
    flags: "readonly",
    arity: -3,
    writes: false,
    summary: "Returns the total and one page of the meetings a user may see, filtered and sorted",
    complexity: "O(C + M) where C is the size of the FILTER and EXCLUDE sets read and M the number of candidate meetings, plus O(M log(offset+count)) to cut the page",
    since: "0.1.0",
    args: QUERY_ARGS,
};

/// The clauses CRM.MEETINGS and CRM.FACETS share.
const FIELD_VALUE: &[Arg] = &[
    Arg::new("field", ArgKind::Text),
    Arg::new("value", ArgKind::Text),
];
const FILTER: Arg = Arg::new("filter", ArgKind::Block)
    .token("FILTER")
    .optional()
    .multiple_token()
    .of(FIELD_VALUE);
const EXCLUDE: Arg = Arg::new("exclude", ArgKind::Block)
    .token("EXCLUDE")
    .optional()
    .multiple_token()
    .of(FIELD_VALUE);
const RANGE: Arg = Arg::new("range", ArgKind::Block)
    .token("RANGE")
    .optional()
    .multiple_token()
    .of(&[
        Arg::new("field", ArgKind::Text),
        Arg::new("min", ArgKind::Text),
        Arg::new("max", ArgKind::Text),
    ]);
const FORMAT: Arg = Arg::new("format", ArgKind::OneOf)
    .token("FORMAT")
    .optional()
    .of(&[
        Arg::new("json", ArgKind::PureToken).token("JSON"),
        Arg::new("resp", ArgKind::PureToken).token("RESP"),
    ]);

/// The arguments of CRM.MEETINGS and CRM.EXPLAIN.
const QUERY_ARGS: &[Arg] = &[
    INSTALLATION,
    Arg::new("user", ArgKind::Text),
    FILTER,
    EXCLUDE,
    RANGE,
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
    Arg::new("page", ArgKind::OneOf).optional().of(&[
        Arg::new("limit", ArgKind::Block).token("LIMIT").of(&[
            Arg::new("offset", ArgKind::Integer),
            Arg::new("count", ArgKind::Integer),
        ]),
        Arg::new("after", ArgKind::Block).token("AFTER").of(&[
            Arg::new("id", ArgKind::Text),
            Arg::new("count", ArgKind::Integer),
        ]),
    ]),
    Arg::new("return", ArgKind::Block)
        .token("RETURN")
        .optional()
        .of(&[
            Arg::new("count", ArgKind::Integer),
            Arg::new("field", ArgKind::Text).multiple(),
        ]),
    FORMAT,
];

pub const FACETS: CommandInfo = CommandInfo {
    name: "crm.facets",
    flags: "readonly",
    arity: -3,
    writes: false,
    summary: "Counts the meetings a user may see, filtered like CRM.MEETINGS, in each named value's set of each FIELD",
    complexity: "O(C + M) where C is the size of the FILTER, EXCLUDE and FIELD sets read and M the number of candidate meetings",
    since: "0.1.0",
    args: &[
        INSTALLATION,
        Arg::new("user", ArgKind::Text),
        FILTER,
        EXCLUDE,
        RANGE,
        Arg::new("field", ArgKind::Block)
            .token("FIELD")
            .multiple_token()
            .of(&[
                Arg::new("field", ArgKind::Text),
                Arg::new("count", ArgKind::Integer),
                Arg::new("value", ArgKind::Text).multiple(),
            ]),
        FORMAT,
    ],
};

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

pub const MEETING_MSET: CommandInfo = CommandInfo {
    name: "crm.meeting.mset",
    flags: "write deny-oom",
    arity: -5,
    writes: true,
    summary: "Creates or updates up to 500 meetings of one installation in one step, as CRM.MEETING.SET does each",
    complexity: "O(F) where F is the number of fields given",
    since: "0.1.0",
    args: &[
        INSTALLATION,
        Arg::new("meeting", ArgKind::Block).multiple().of(&[
            ID,
            Arg::new("count", ArgKind::Integer),
            Arg::new("data", ArgKind::Block)
                .multiple()
                .of(&[Arg::new("field", ArgKind::Text), Arg::new("value", ArgKind::Text)]),
        ]),
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

pub const ALL: [CommandInfo; 8] = [
    MEETINGS,
    EXPLAIN,
    FACETS,
    MEETING_SET,
    MEETING_MSET,
    MEETING_DEL,
    CHECK,
    REPAIR,
];

/// The module's own ACL category, where the server has `RedisModule_AddACLCategory`.
pub const ACL_CATEGORY: &str = "crm";
