//! The seed's example (crm-poc.txt) through CRM.MEETINGS on a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{meetings, Server};

/// Loads the seed's sets and hashes (with Unix-second dates in `meeting_date`).
pub fn load_seed(con: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    pipe.cmd("SADD").arg("meeting_type:email_ins_10").arg(&[11, 12, 15, 16, 19, 20]).ignore();
    pipe.cmd("SADD").arg("meeting_type:sms_ins_10").arg(&[11, 13, 15, 17, 19, 21]).ignore();
    pipe.cmd("SADD").arg("meeting_status:open_ins_10").arg(&[11, 13, 17, 19, 23]).ignore();
    pipe.cmd("SADD").arg("meeting_status:close_ins_10").arg(&[10, 12, 14, 16, 18, 20]).ignore();
    pipe.cmd("SADD").arg("clients_for_user:1").arg(&[7, 9, 11, 47]).ignore();
    pipe.cmd("SADD").arg("clients_for_user:2").arg(&[1, 2, 3, 8, 10, 11]).ignore();
    pipe.cmd("SADD").arg("clients_for_user:3").arg(&[4, 6, 8, 10, 12, 14, 16, 20, 24]).ignore();
    pipe.cmd("SADD").arg("clients_for_user:4").arg(&[3, 6, 9, 12, 15, 18, 21, 24]).ignore();
    for (id, client, date) in [(11, 2, 1_497_052_800), (15, 7, 1_497_225_600), (19, 8, 1_497_484_800), (23, 12, 1_497_571_200)] {
        pipe.cmd("HSET").arg(format!("meeting:{id}")).arg("clientid").arg(client).arg("details").arg(format!("{{\"meeting\":{id}}}")).ignore();
        pipe.cmd("ZADD").arg("meeting_date").arg(date).arg(format!("meeting:{id}")).ignore();
    }
    pipe.query::<()>(con).unwrap();
}

#[test]
fn seed_example_answers_per_user() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let query = |con: &mut redis::Connection, user: &str| {
        meetings(con, &["10", user, "FILTER", "type", "email", "FILTER", "status", "open"])
    };
    let user1 = query(&mut con, "1");
    assert_eq!((user1.total, user1.ids()), (0, vec![]));
    let user2 = query(&mut con, "2");
    assert_eq!((user2.total, user2.ids()), (2, vec!["11".to_string(), "19".to_string()]));
    assert_eq!(user2.page[0].1.as_deref(), Some(&b"{\"meeting\":11}"[..]));
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
    let all = ["10", "3", "FILTER", "status", "open", "FILTER", "status", "close"];
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
    // No FILTER and no meetings_ins_10 set: nothing to list.
    assert_eq!(meetings(&mut con, &["10", "3"]).total, 0);
}
