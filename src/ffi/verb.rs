//! Command names as the command filter tells them apart. The filter runs before every
//! command of the server, and most are none the module follows: a name is looked up once,
//! in a table with one place per name the module follows (a perfect hash of a few of its
//! bytes, checked when the table is made), and compared with the one name there.

/// The enum [`Verb`] and the table [`NAMES`] from one list.
macro_rules! verbs {
    ($($verb:ident = $name:literal,)*) => {
        /// A command the filter follows, or [`Verb::Other`].
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub enum Verb {
            Other,
            $($verb,)*
        }

        /// Every name the filter follows, in lowercase letters.
        const NAMES: &[(&[u8], Verb)] = &[$(($name, Verb::$verb),)*];
    };
}

verbs! {
    Acl = b"acl",
    Append = b"append",
    Bitfield = b"bitfield",
    Bitop = b"bitop",
    Client = b"client",
    Config = b"config",
    Decr = b"decr",
    Decrby = b"decrby",
    Discard = b"discard",
    Exec = b"exec",
    Failover = b"failover",
    Geoadd = b"geoadd",
    Getset = b"getset",
    Hdel = b"hdel",
    Hexpire = b"hexpire",
    Hexpireat = b"hexpireat",
    Hgetdel = b"hgetdel",
    Hgetex = b"hgetex",
    Hincrby = b"hincrby",
    Hincrbyfloat = b"hincrbyfloat",
    Hmset = b"hmset",
    Hpersist = b"hpersist",
    Hpexpire = b"hpexpire",
    Hpexpireat = b"hpexpireat",
    Hset = b"hset",
    Hsetex = b"hsetex",
    Hsetnx = b"hsetnx",
    Incr = b"incr",
    Incrby = b"incrby",
    Incrbyfloat = b"incrbyfloat",
    Mset = b"mset",
    Msetnx = b"msetnx",
    Multi = b"multi",
    Pfadd = b"pfadd",
    Pfmerge = b"pfmerge",
    Psetex = b"psetex",
    Reset = b"reset",
    Sadd = b"sadd",
    Set = b"set",
    Setbit = b"setbit",
    Setex = b"setex",
    Setnx = b"setnx",
    Setrange = b"setrange",
    Smove = b"smove",
    Srem = b"srem",
    Zadd = b"zadd",
    Zincrby = b"zincrby",
    Zrem = b"zrem",
}

const SLOTS: usize = 128;

/// A name's place in [`TABLE`], from its first two and last two bytes (lowercase, or near
/// enough: the name found there is compared in full) and its length. The multipliers give
/// every name of [`NAMES`] a place of its own: [`table`] fails the build otherwise.
const fn slot(first: u8, second: u8, before_last: u8, last: u8, len: usize) -> usize {
    (lower(first) + 9 * lower(second) + 10 * lower(before_last) + 13 * lower(last) + len) % SLOTS
}

/// A letter in lowercase (other bytes change too, harmlessly: see [`slot`]).
const fn lower(byte: u8) -> usize {
    (byte | 0x20) as usize
}

static TABLE: [(&[u8], Verb); SLOTS] = table();

/// [`NAMES`] in their places. Evaluated at compile time (a `static`'s value): two names in
/// one place fail the build, never a server.
#[allow(clippy::indexing_slicing, clippy::panic)]
const fn table() -> [(&'static [u8], Verb); SLOTS] {
    let mut table: [(&[u8], Verb); SLOTS] = [(b"", Verb::Other); SLOTS];
    let mut at = 0;
    while at < NAMES.len() {
        let (name, verb) = NAMES[at];
        let ([first, second, ..], [.., before_last, last]) = (name, name) else {
            panic!("a name of fewer than two bytes");
        };
        let place = slot(*first, *second, *before_last, *last, name.len());
        if !table[place].0.is_empty() {
            panic!("two names share a place: change the multipliers of `slot`");
        }
        table[place] = (name, verb);
        at += 1;
    }
    table
}

impl Verb {
    /// The verb of a command named `name`, in any case.
    pub fn of(name: &[u8]) -> Verb {
        let ([first, second, ..], [.., before_last, last]) = (name, name) else {
            return Verb::Other;
        };
        match TABLE.get(slot(*first, *second, *before_last, *last, name.len())) {
            Some(&(known, verb)) if same_letters(known, name) => verb,
            _ => Verb::Other,
        }
    }
}

/// Whether `name` is `known` (lowercase letters) in any case: a letter with its case bit
/// set is that lowercase letter, and no other byte gives one (cheaper than
/// `eq_ignore_ascii_case`, which lowercases both sides).
fn same_letters(known: &[u8], name: &[u8]) -> bool {
    known.len() == name.len() && known.iter().zip(name).all(|(k, n)| n | 0x20 == *k)
}

#[cfg(test)]
mod tests {
    use super::{Verb, NAMES};

    #[test]
    fn every_name_is_found_in_any_case_and_no_other() {
        for &(name, verb) in NAMES {
            assert!(
                name.iter().all(u8::is_ascii_lowercase),
                "same_letters needs letters"
            );
            assert_eq!(Verb::of(name), verb);
            assert_eq!(Verb::of(&name.to_ascii_uppercase()), verb);
            let mut longer = name.to_vec();
            longer.push(b's');
            assert_ne!(Verb::of(&longer), verb);
            assert_ne!(Verb::of(&name[..name.len() - 1]), verb);
        }
        assert_eq!(Verb::of(b"sEt"), Verb::Set);
        for other in [
            &b""[..],
            b"s",
            b"get",
            b"hget",
            b"set\0",
            b"zset",
            b"del",
            b"sadd2",
            b"S\xc5T",
            b"SE\x14",
        ] {
            assert_eq!(Verb::of(other), Verb::Other, "{other:?}");
        }
    }
}
