//! The words the core is written in: byte strings, the sets a query names, the effects of
//! a write, and the hash fields the module itself reads.

pub type Bytes = Vec<u8>;

/// The hash field naming a meeting's client (client security).
pub const CLIENT_FIELD: &[u8] = b"clientid";
/// The hash field naming the installation a meeting belongs to: CRM writes of another
/// installation refuse the meeting (its id may be a key other installations share).
pub const INSTALLATION_FIELD: &[u8] = b"installation";
/// The hash field returned for each meeting unless RETURN names others.
pub const DETAILS_FIELD: &[u8] = b"details";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// A set the query reads, named by what it means rather than by its key.
#[derive(Debug, Clone, Copy)]
pub enum SetRef<'q> {
    /// Ids of the installation's meetings whose `field` holds `value`.
    Filter {
        installation: &'q [u8],
        field: &'q [u8],
        value: &'q [u8],
    },
    /// Ids of all the installation's meetings.
    Meetings { installation: &'q [u8] },
    /// Ids of the clients whose meetings the user may see.
    VisibleClients {
        installation: &'q [u8],
        user: &'q [u8],
    },
}

/// A change the store applies, within the installation and meeting of the write.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// HSET of these pairs on the meeting's hash.
    WriteHash(Vec<(Bytes, Bytes)>),
    /// DEL of the meeting's hash.
    DeleteHash,
    AddToValueSet {
        field: Bytes,
        value: Bytes,
    },
    RemoveFromValueSet {
        field: Bytes,
        value: Bytes,
    },
    AddToMeetingsSet,
    RemoveFromMeetingsSet,
    SetSortScore {
        field: Bytes,
        score: f64,
    },
    RemoveSortScore {
        field: Bytes,
    },
}
