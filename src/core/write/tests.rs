use super::*;

fn schema() -> Schema {
    Schema::seed()
}

fn write(words: &[&str]) -> Result<MeetingWrite, CrmError> {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    parse_meeting_set(&args)
}

fn stored(pairs: &[(&str, Option<&str>)]) -> Vec<(Bytes, Option<Bytes>)> {
    pairs
        .iter()
        .map(|(f, v)| (f.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect()
}

fn b(text: &str) -> Bytes {
    text.as_bytes().to_vec()
}

#[test]
fn parsing() {
    let w = write(&[
        "10", "11", "status", "open", "status", "close", "clientid", "2",
    ])
    .unwrap();
    assert_eq!(
        w.fields,
        vec![(b("status"), b("close")), (b("clientid"), b("2"))]
    );
    let arity = "ERR wrong number of arguments for 'crm.meeting.set' command";
    assert_eq!(write(&["10", "11"]).unwrap_err().to_string(), arity);
    assert_eq!(
        write(&["10", "11", "status"]).unwrap_err().to_string(),
        arity
    );
    assert_eq!(
        write(&["10", "", "a", "b"]).unwrap_err().to_string(),
        "ERR meeting id must not be empty"
    );
    assert_eq!(
        write(&["10", "1", "", "b"]).unwrap_err().to_string(),
        "ERR field names must not be empty"
    );
}

#[test]
fn validation() {
    let check = |words: &[&str]| validate(&write(words).unwrap(), &schema());
    assert!(check(&[
        "10",
        "1",
        "details",
        "{\"a\":1}",
        "date",
        "2017-06-10T00:00:00Z"
    ])
    .is_ok());
    assert!(check(&["10", "1", "date", "1497052800"]).is_ok());
    assert_eq!(
        check(&["10", "1", "details", "{oops"])
            .unwrap_err()
            .to_string(),
        "ERR details of meeting '1' must be valid JSON"
    );
    assert_eq!(
        check(&["10", "1", "date", "10062017"]).map_err(|e| e.to_string()),
        Ok(())
    );
    assert_eq!(
        check(&["10", "1", "date", "tomorrow"])
            .unwrap_err()
            .to_string(),
        "ERR date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got 'tomorrow'"
    );
    assert_eq!(
        check(&["10", "1", "date", "2025-03-04"]).map_err(|e| e.to_string()),
        Ok(())
    );
    assert_eq!(
        check(&["10", "1", "date", "99999999999"]).map_err(|e| e.to_string()),
        Ok(())
    );
    assert_eq!(
        check(&["10", "1", "date", "1718000000000"])
            .unwrap_err()
            .to_string(),
        "ERR date 1718000000000 looks like milliseconds: sort fields take Unix seconds \
         (divide by 1000), an RFC 3339 date-time or a YYYY-MM-DD date"
    );
}

#[test]
fn create_requires_a_client() {
    let w = write(&["10", "11", "status", "open"]).unwrap();
    assert_eq!(
        effects_of_set(w.clone(), None, &schema())
            .unwrap_err()
            .to_string(),
        "ERR clientid is required to create meeting '11'"
    );
    let existing = stored(&[
        ("clientid", Some("2")),
        ("type", None),
        ("status", None),
        ("date", None),
    ]);
    assert!(
        !effects_of_set(w.clone(), Some(&existing), &schema())
            .unwrap()
            .0
    );
    // An existing hash without a client (written before the module) can be updated.
    let clientless = stored(&[("clientid", None), ("type", None)]);
    assert!(
        !effects_of_set(w.clone(), Some(&clientless), &schema())
            .unwrap()
            .0
    );
}

#[test]
fn a_move_leaves_the_old_value() {
    let existing = stored(&[
        ("clientid", Some("2")),
        ("type", Some("email")),
        ("status", Some("open")),
    ]);
    let w = write(&[
        "10", "11", "status", "close", "type", "email", "date", "100",
    ])
    .unwrap();
    let (created, effects) = effects_of_set(w.clone(), Some(&existing), &schema()).unwrap();
    assert!(!created);
    assert_eq!(
        effects,
        vec![
            Effect::WriteHash(w.fields.clone()),
            Effect::RemoveFromValueSet {
                field: b("status"),
                value: b("open")
            },
            Effect::AddToValueSet {
                field: b("status"),
                value: b("close")
            },
            Effect::AddToValueSet {
                field: b("type"),
                value: b("email")
            },
            Effect::SetSortScore {
                field: b("date"),
                score: 100.0
            },
            Effect::AddToMeetingsSet,
        ]
    );
}

#[test]
fn delete_removes_every_listing() {
    let existing = stored(&[
        ("clientid", Some("2")),
        ("type", Some("sms")),
        ("status", None),
    ]);
    assert_eq!(
        effects_of_delete(b"10", b"5", Some(&existing), &schema()).unwrap(),
        vec![
            Effect::RemoveFromValueSet {
                field: b("type"),
                value: b("sms")
            },
            Effect::RemoveSortScore { field: b("date") },
            Effect::RemoveFromMeetingsSet,
            Effect::DeleteHash,
        ]
    );
    assert_eq!(
        effects_of_delete(b"10", b"5", None, &schema()).unwrap(),
        vec![Effect::DeleteHash]
    );
}

#[test]
fn another_installations_meeting_is_refused() {
    let theirs = stored(&[("clientid", Some("2")), ("installation", Some("20"))]);
    let message = "ERR meeting '5' belongs to installation '20'";
    let error = effects_of_delete(b"10", b"5", Some(&theirs), &schema()).unwrap_err();
    assert_eq!(error.to_string(), message);
    let write = parse_meeting_set(&[b"10", b"5", b"details", b"{}"]).unwrap();
    let error = effects_of_set(write.clone(), Some(&theirs), &schema()).unwrap_err();
    assert_eq!(error.to_string(), message);
    // Its own, and a hash written before the module (naming none), are written.
    let ours = stored(&[("clientid", Some("2")), ("installation", Some("10"))]);
    assert!(effects_of_set(write.clone(), Some(&ours), &schema()).is_ok());
    assert!(effects_of_set(
        write.clone(),
        Some(&stored(&[("clientid", Some("2"))])),
        &schema()
    )
    .is_ok());
    // A new meeting's hash is given its installation; another one may not be named.
    let new = parse_meeting_set(&[b"10", b"6", b"clientid", b"3"]).unwrap();
    let (_, effects) = effects_of_set(new.clone(), None, &schema()).unwrap();
    assert_eq!(
        effects.first(),
        Some(&Effect::WriteHash(vec![
            (b("clientid"), b("3")),
            (b("installation"), b("10"))
        ]))
    );
    let other =
        parse_meeting_set(&[b"10", b"6", b"clientid", b"3", b"installation", b"20"]).unwrap();
    assert!(effects_of_set(other.clone(), None, &schema()).is_err());
}

#[test]
fn parsing_many() {
    let args = |words: &[&str]| -> Vec<Vec<u8>> { words.iter().map(|w| b(w)).collect() };
    let mset = |words: &[&str]| {
        let owned = args(words);
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        parse_meeting_mset(&refs).map_err(|e| e.to_string())
    };
    let writes = mset(&[
        "10", "11", "2", "clientid", "3", "status", "open", "12", "1", "type", "sms",
    ])
    .unwrap();
    assert_eq!(
        writes,
        vec![
            write(&["10", "11", "clientid", "3", "status", "open"]).unwrap(),
            write(&["10", "12", "type", "sms"]).unwrap(),
        ]
    );
    let arity = "ERR wrong number of arguments for 'crm.meeting.mset' command";
    for short in [
        &["10"][..],
        &["10", "11"],
        &["10", "11", "1", "clientid"],
        &["10", "11", "1", "clientid", "3", "12"],
        &["10", "11", "2", "clientid", "3"],
    ] {
        assert_eq!(mset(short).unwrap_err(), arity, "{short:?}");
    }
    assert_eq!(
        mset(&["10", "11", "x", "clientid", "3"]).unwrap_err(),
        "ERR the field count of meeting '11' must be a positive integer, got 'x'"
    );
    assert_eq!(
        mset(&["10", "11", "0"]).unwrap_err(),
        "ERR the field count of meeting '11' must be a positive integer, got '0'"
    );
    assert_eq!(
        mset(&["10", "11", "1", "a", "b", "11", "1", "c", "d"]).unwrap_err(),
        "ERR meeting '11' is given twice: one CRM.MEETING.MSET writes each meeting once"
    );
    assert_eq!(
        mset(&["10", "", "1", "a", "b"]).unwrap_err(),
        "ERR meeting id must not be empty"
    );
    let mut many = vec!["10".to_string()];
    for id in 0..=MSET_MAX_MEETINGS {
        many.extend([id.to_string(), "1".into(), "a".into(), "b".into()]);
    }
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(mset(&many)
        .unwrap_err()
        .contains("at most 500 meetings a call"));
    assert_eq!(
        mset(&many[..many.len() - 4]).unwrap().len(),
        MSET_MAX_MEETINGS
    );
}
