//! Key bindings as data: one table of key, intent and label that dispatch
//! ([`App::handle_key`](super::App::handle_key)), the footer and the help read, so they
//! cannot drift.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Quit,
    AskStop,
    Help,
    NextChart,
    PreviousChart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Code(KeyCode),
}

impl Key {
    fn matches(self, k: &KeyEvent) -> bool {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Char(c) => !ctrl && k.code == KeyCode::Char(c),
            Key::Ctrl(c) => ctrl && k.code == KeyCode::Char(c),
            Key::Code(code) => k.code == code,
        }
    }
}

pub struct Binding {
    pub intent: Intent,
    pub keys: &'static [Key],
    /// The keys as the help lists them.
    pub label: &'static str,
    /// The footer's short form, when the footer shows it: (keys, what).
    pub footer: Option<(&'static str, &'static str)>,
    pub help: &'static str,
}

/// Every key of the dashboard. Raw mode turns Ctrl-C into a key: it must still quit.
pub const BINDINGS: &[Binding] = &[
    Binding {
        intent: Intent::Quit,
        keys: &[Key::Char('q'), Key::Code(KeyCode::Esc), Key::Ctrl('c'), Key::Ctrl('d')],
        label: "q, Esc, Ctrl-C, Ctrl-D",
        footer: Some(("q", "quit (run goes on)")),
        help: "leave the dashboard; the run goes on",
    },
    Binding {
        intent: Intent::AskStop,
        keys: &[Key::Char('s')],
        label: "s",
        footer: Some(("s", "stop run")),
        help: "ask the run to stop gracefully (confirm with y)",
    },
    Binding {
        intent: Intent::NextChart,
        keys: &[Key::Code(KeyCode::Tab), Key::Code(KeyCode::Right), Key::Code(KeyCode::Down)],
        label: "tab, →, ↓",
        footer: Some(("tab/←→", "chart")),
        help: "next chart",
    },
    Binding {
        intent: Intent::PreviousChart,
        keys: &[Key::Code(KeyCode::BackTab), Key::Code(KeyCode::Left), Key::Code(KeyCode::Up)],
        label: "shift-tab, ←, ↑",
        footer: None,
        help: "previous chart",
    },
    Binding {
        intent: Intent::Help,
        keys: &[Key::Char('?'), Key::Char('h'), Key::Code(KeyCode::F(1))],
        label: "?, h, F1",
        footer: Some(("?", "help")),
        help: "this help; any key closes it",
    },
];

/// The intent of `key` among `intents` (a screen's subset of the table).
pub fn intent_of(key: &KeyEvent, intents: &[Intent]) -> Option<Intent> {
    BINDINGS
        .iter()
        .filter(|b| intents.contains(&b.intent))
        .find(|b| b.keys.iter().any(|k| k.matches(key)))
        .map(|b| b.intent)
}

/// The bindings of `intents`, in the table's order.
pub fn bindings(intents: &[Intent]) -> impl Iterator<Item = &'static Binding> + '_ {
    BINDINGS.iter().filter(move |b| intents.contains(&b.intent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_intent_and_every_label_names_its_keys() {
        let all = [Intent::Quit, Intent::AskStop, Intent::Help, Intent::NextChart, Intent::PreviousChart];
        for b in BINDINGS {
            for k in b.keys {
                let owners = BINDINGS.iter().filter(|o| o.keys.contains(k)).count();
                assert_eq!(owners, 1, "{k:?} is bound twice");
                let name = match k {
                    Key::Char(c) => c.to_string(),
                    Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
                    Key::Code(KeyCode::F(n)) => format!("F{n}"),
                    Key::Code(KeyCode::Esc) => "Esc".into(),
                    Key::Code(KeyCode::Tab) => "tab".into(),
                    Key::Code(KeyCode::BackTab) => "shift-tab".into(),
                    Key::Code(KeyCode::Left) => "←".into(),
                    Key::Code(KeyCode::Right) => "→".into(),
                    Key::Code(KeyCode::Up) => "↑".into(),
                    Key::Code(KeyCode::Down) => "↓".into(),
                    other => panic!("no label for {other:?}"),
                };
                assert!(b.label.split(", ").any(|l| l == name), "{name} missing from the label {:?}", b.label);
            }
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(intent_of(&ctrl_c, &all), Some(Intent::Quit));
        let c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE);
        assert_eq!(intent_of(&c, &all), None);
        let s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE);
        assert_eq!(intent_of(&s, &[Intent::Quit]), None, "a screen's subset limits the keys");
    }
}
