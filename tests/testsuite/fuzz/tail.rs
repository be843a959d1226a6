//! `events.jsonl` tailing: whatever mix of events, garbage, blank, invalid UTF-8 and
//! overlong lines is appended, in whatever pieces between polls, the reader yields
//! exactly the events in order and counts every other non-blank line as skipped.
use super::fuzz;
use proptest::prelude::*;
use std::io::Write;
use transfer_lab::events::parse_line;
use transfer_lab::tui::tail::{Tail, MAX_LINE};

#[derive(Debug, Clone)]
enum Line {
    Event(u64),
    Garbage(String),
    Binary(Vec<u8>),
    Blank,
    /// Over `MAX_LINE` by this much.
    Overlong(usize),
}

fn lines() -> impl Strategy<Value = Vec<Line>> {
    let line = prop_oneof![
        8 => (0..1_000_000u64).prop_map(Line::Event),
        3 => "[^\n]{0,60}".prop_map(|s| Line::Garbage(format!("#{s}"))),
        1 => proptest::collection::vec(0x80..=0xffu8, 1..20).prop_map(Line::Binary),
        1 => Just(Line::Blank),
        1 => (1..5000usize).prop_map(Line::Overlong),
    ];
    proptest::collection::vec(line, 0..30)
}

fn event(t: u64) -> String {
    format!(r#"{{"v":1,"t_ms":{t},"kind":"stage_started","stage":"extract"}}"#)
}

#[test]
fn tailing_yields_exactly_the_events_whatever_is_appended() {
    assert!(parse_line(&event(1)).is_some(), "the generator's event must parse");
    fuzz(
        "events-tail",
        120,
        (lines(), proptest::collection::vec(any::<usize>(), 0..12), any::<bool>()),
        |(lines, cuts, end_nl)| {
            let mut text = Vec::new();
            let (mut want, mut skipped) = (vec![], 0);
            let n = lines.len();
            for (i, l) in lines.iter().enumerate() {
                match l {
                    Line::Event(t) => {
                        text.extend(event(*t).as_bytes());
                        want.push(*t);
                    }
                    Line::Garbage(s) => {
                        text.extend(s.as_bytes());
                        skipped += 1;
                    }
                    Line::Binary(b) => {
                        text.extend(b);
                        skipped += 1;
                    }
                    Line::Blank => text.extend(b"  "),
                    Line::Overlong(over) => {
                        text.extend(std::iter::repeat_n(b'x', MAX_LINE + over));
                        skipped += 1;
                    }
                }
                if i + 1 < n || end_nl {
                    text.push(b'\n');
                }
            }
            // A last line without its newline is still being written: not yet an event.
            if !end_nl {
                match lines.last() {
                    Some(Line::Event(_)) => drop(want.pop()),
                    Some(Line::Garbage(_) | Line::Binary(_)) => skipped -= 1,
                    _ => {}
                }
            }
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("events.jsonl");
            let mut tail = Tail::new(&path);
            let mut file = std::fs::File::create(&path).unwrap();
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
            at.push(text.len());
            at.sort();
            let (mut got, mut got_skipped, mut from) = (vec![], 0, 0);
            for to in at {
                file.write_all(&text[from..to]).unwrap();
                // Catching up takes a poll per 8 MiB.
                for _ in 0..=(to - from) / (8 << 20) {
                    let p = tail.poll().unwrap();
                    prop_assert!(!p.reset);
                    got.extend(p.events.iter().map(|e| e.t_ms));
                    got_skipped += p.skipped;
                }
                from = to;
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_skipped, skipped);
            Ok(())
        },
    );
}

#[test]
fn any_text_parses_or_is_skipped() {
    fuzz(
        "events-parse",
        400,
        prop_oneof!["\\PC{0,200}", "\\{\"v\":1,\"t_ms\":[0-9]{1,3},\"kind\":\"[a-z_]{1,20}\"[^\n]{0,80}"],
        |s| {
            let _ = parse_line(&s);
            Ok(())
        },
    );
}
