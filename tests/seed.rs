//! The seed's example (crm-poc.txt) through CRM.MEETINGS on a real server.

mod common;

use common::{crm_load, load_seed, meetings, Server, TAGGED_TEMPLATES};

#[test]
fn seed_example_answers_per_user() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let query = |con: &mut redis::Connection, user: &str| {
        meetings(
            con,
            &[
                "10", user, "FILTER", "type", "email", "FILTER", "status", "open",
            ],
        )
    };
    let user1 = query(&mut con, "1");
    assert_eq!((user1.total, user1.ids()), (0, vec![]));
    let user2 = query(&mut con, "2");
    assert_eq!(
        (user2.total, user2.ids()),
        (2, vec!["11".to_string(), "19".to_string()])
    );
    let details = br#"{"subject":"Kick-off","date":"2017-06-10"}"#;
    assert_eq!(user2.page[0].1.as_deref(), Some(&details[..]));
    let user3 = query(&mut con, "3");
    assert_eq!((user3.total, user3.ids()), (1, vec!["19".to_string()]));
    let user4 = query(&mut con, "4");
    assert_eq!((user4.total, user4.ids()), (0, vec![]));
}

#[test]
fn seed_example_paging_and_order() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let all = [
        "10", "3", "FILTER", "status", "open", "FILTER", "status", "close",
    ];
    // User 3 sees 19 (client 8) and 23 (client 12); 23 is the later meeting.
    assert_eq!(meetings(&mut con, &all).ids(), ["19", "23"]);
    let desc = [&all[..], &["SORTBY", "date", "DESC"]].concat();
    assert_eq!(meetings(&mut con, &desc).ids(), ["23", "19"]);
    let second = [&desc[..], &["LIMIT", "1", "1"]].concat();
    let page = meetings(&mut con, &second);
    assert_eq!((page.total, page.ids()), (2, vec!["19".to_string()]));
    let count_only = [&all[..], &["LIMIT", "0", "0"]].concat();
    let page = meetings(&mut con, &count_only);
    assert_eq!((page.total, page.page.len()), (2, 0));
    // No FILTER: every meeting of the installation (meetings_ins_10) the user may see.
    assert_eq!(meetings(&mut con, &["10", "3"]).ids(), ["19", "23"]);
    assert_eq!(meetings(&mut con, &["10", "2"]).ids(), ["11", "19"]);
}

/// crm-load next to the seed (as `make run` does): it skips the ids another installation
/// holds, so the seed example still answers 11 and 19; a second installation's load skips
/// the first one's; and it writes through the server's templates.
#[test]
fn crm_load_never_overwrites_and_follows_the_templates() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let seed_hash = |con: &mut redis::Connection| -> Vec<String> {
        redis::cmd("HGETALL").arg("meeting:11").query(con).unwrap()
    };
    let before = seed_hash(&mut con);
    let load = |installation: &str, prefix: &str| {
        crm_load(
            &server,
            &[
                "--meetings",
                "50",
                "--installation",
                installation,
                "--neighbours",
                "0",
                "--users",
                "10",
                "--user-prefix",
                prefix,
            ],
        );
    };
    load("20", "g");
    load("30", "h");
    let seed = meetings(
        &mut con,
        &[
            "10", "2", "FILTER", "type", "email", "FILTER", "status", "open",
        ],
    );
    assert_eq!(
        (seed.total, seed.ids()),
        (2, vec!["11".to_string(), "19".to_string()])
    );
    assert_eq!(seed_hash(&mut con), before);
    // Each installation got its 50 meetings, under ids no other holds.
    for (installation, manager) in [("20", "g1"), ("30", "h1")] {
        let set: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("meetings_ins_{installation}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(set.len(), 50, "installation {installation}");
        for id in &set {
            let owner: Option<String> = redis::cmd("HGET")
                .arg(format!("meeting:{id}"))
                .arg("installation")
                .query(&mut con)
                .unwrap();
            assert_eq!(owner.as_deref(), Some(installation), "meeting {id}");
        }
        assert!(meetings(&mut con, &[installation, manager]).total > 0);
    }

    let tagged = Server::start_with(&TAGGED_TEMPLATES, &[]);
    crm_load(
        &tagged,
        &["--meetings", "50", "--neighbours", "0", "--users", "10"],
    );
    let mut con = tagged.connect();
    assert!(
        meetings(&mut con, &["10", "1"]).total > 0,
        "crm-load ignored the templates"
    );
}
