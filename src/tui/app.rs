//! The dashboard's UI state: the run's state plus what the user is looking at.
//! Keys call intent methods; anything with a side effect comes back as an [`Action`]
//! for the terminal loop to perform, so this stays testable without a terminal.
use super::device::DeviceInfo;
use super::keys::{self, Intent};
use super::state::{DashState, RunStatus};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartTab {
    EpochLoss,
    EpochAccuracy,
    StepLoss,
}

impl ChartTab {
    pub const ALL: [ChartTab; 3] = [ChartTab::EpochLoss, ChartTab::EpochAccuracy, ChartTab::StepLoss];

    pub fn title(self) -> &'static str {
        match self {
            ChartTab::EpochLoss => "loss/epoch",
            ChartTab::EpochAccuracy => "accuracy/epoch",
            ChartTab::StepLoss => "loss/step",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&t| t == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmStop,
}

/// Side effects asked for by a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the dashboard; the run goes on.
    Quit,
    /// Ask the run to stop gracefully (the loop writes `STOP` into the run directory).
    RequestStop,
}

pub struct App {
    pub state: DashState,
    pub device: DeviceInfo,
    /// Wall clock in Unix ms, injected so screens are reproducible.
    pub now_ms: u64,
    /// The run directory as shown in the title.
    pub run_dir: String,
    pub chart: ChartTab,
    pub overlay: Overlay,
    /// A `STOP` file is in the run directory (ours or someone else's).
    pub stop_requested: bool,
    /// One-line feedback in the footer, e.g. why `s` did nothing.
    pub message: Option<String>,
}

impl App {
    pub fn new(run_dir: impl Into<String>) -> Self {
        App {
            state: DashState::default(),
            device: DeviceInfo::default(),
            now_ms: 0,
            run_dir: run_dir.into(),
            chart: ChartTab::EpochLoss,
            overlay: Overlay::None,
            stop_requested: false,
            message: None,
        }
    }

    /// The keys this screen answers to (the run's dashboard: all of them).
    pub const INTENTS: &'static [Intent] =
        &[Intent::Quit, Intent::AskStop, Intent::Help, Intent::NextChart, Intent::PreviousChart];

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let intent = keys::intent_of(&key, Self::INTENTS);
        // Ctrl-C and Ctrl-D get the user out from anywhere, an open overlay included.
        if intent == Some(Intent::Quit) && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Some(self.quit());
        }
        match self.overlay {
            Overlay::ConfirmStop => return self.confirm_stop(matches!(key.code, KeyCode::Char('y' | 'Y'))),
            // Any key closes the help; quitting keys other than Esc still quit.
            Overlay::Help if intent != Some(Intent::Quit) || key.code == KeyCode::Esc => {
                self.overlay = Overlay::None;
                return None;
            }
            _ => {}
        }
        match intent? {
            Intent::Quit => return Some(self.quit()),
            Intent::AskStop => self.ask_stop(),
            Intent::Help => self.toggle_help(),
            Intent::NextChart => self.cycle_chart(1),
            Intent::PreviousChart => self.cycle_chart(ChartTab::ALL.len() - 1),
        }
        None
    }

    pub fn quit(&mut self) -> Action {
        Action::Quit
    }

    /// Opens the confirmation, unless there is nothing left to stop.
    pub fn ask_stop(&mut self) {
        self.message = None;
        if matches!(self.state.status(), RunStatus::Finished | RunStatus::Failed) {
            self.message = Some("the run has already ended".into());
        } else if self.stop_requested {
            self.message = Some("stop already requested".into());
        } else {
            self.overlay = Overlay::ConfirmStop;
        }
    }

    pub fn confirm_stop(&mut self, yes: bool) -> Option<Action> {
        self.overlay = Overlay::None;
        yes.then_some(Action::RequestStop)
    }

    pub fn toggle_help(&mut self) {
        self.overlay = if self.overlay == Overlay::Help { Overlay::None } else { Overlay::Help };
    }

    fn cycle_chart(&mut self, step: usize) {
        let n = ChartTab::ALL.len();
        self.chart = ChartTab::ALL[(self.chart.index() + step) % n];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Envelope, RunEvent};

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn stop_needs_confirmation() {
        let mut app = App::new("runs/x");
        app.state.apply(&Envelope { v: 1, t_ms: 0, event: RunEvent::StageStarted { stage: "train".into() } });
        assert_eq!(app.handle_key(key(KeyCode::Char('s'))), None);
        assert_eq!(app.overlay, Overlay::ConfirmStop);
        assert_eq!(app.handle_key(key(KeyCode::Char('n'))), None);
        assert_eq!(app.overlay, Overlay::None);
        app.handle_key(key(KeyCode::Char('s')));
        assert_eq!(app.handle_key(key(KeyCode::Char('y'))), Some(Action::RequestStop));
        app.stop_requested = true;
        app.handle_key(key(KeyCode::Char('s')));
        assert_eq!((app.overlay, app.message.as_deref()), (Overlay::None, Some("stop already requested")));
    }

    #[test]
    fn a_finished_run_cannot_be_stopped() {
        let mut app = App::new("runs/x");
        app.state.apply(&Envelope {
            v: 1,
            t_ms: 0,
            event: RunEvent::RunFinished { elapsed_ms: 1, test_accuracy: None },
        });
        app.handle_key(key(KeyCode::Char('s')));
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn quit_help_and_chart_keys() {
        let mut app = App::new("runs/x");
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::Quit));
        app.handle_key(key(KeyCode::Char('?')));
        assert_eq!(app.overlay, Overlay::Help);
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None, "Esc closes help instead of quitting");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.chart, ChartTab::EpochAccuracy);
        app.handle_key(key(KeyCode::Left));
        app.handle_key(key(KeyCode::Left));
        assert_eq!(app.chart, ChartTab::StepLoss);
    }
}
