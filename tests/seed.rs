//! The seed's example (crm-poc.txt) through CRM.MEETINGS on a real server.

mod common;

use common::{load_seed, meetings, Server};

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
