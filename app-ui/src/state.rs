//! The UI state and its reducer: plain Rust, tested natively. Components dispatch [`Action`]s and
//! render from [`AppState`]; the IPC calls that produce those actions live in `ipc.rs`.

use std::rc::Rc;

use chrono::{Datelike, Days, NaiveDate};
use shared::ipc::{
    AssignArgs, Board, BoardFilter, CommandError, ConflictView, DeviceStatus, EquipmentView,
    ErrorKind, JobDetail, JobDraft, JobSummary, Session, SuggestionView,
};
use yew::Reducible;

use crate::i18n::Lang;

/// How many days the technician's list shows, today included.
pub const LIST_DAYS: u64 = 14;
/// The hours the day board shows.
pub const FIRST_HOUR: u32 = 6;
pub const LAST_HOUR: u32 = 20;

/// Which screen is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Login,
    Jobs,
    Job(String),
    Board,
    Conflicts,
}

/// The board's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardView {
    Day,
    Week,
}

/// A job picked on the board with the keyboard, and where it would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub job: String,
    pub tech: usize,
    pub date: NaiveDate,
    pub hour: u32,
}

/// A key the board understands while a job is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardKey {
    Left,
    Right,
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub lang: Lang,
    pub today: NaiveDate,
    /// `None` until the shell said whether someone is logged in.
    pub session: Option<Session>,
    pub session_known: bool,
    pub screen: Screen,
    pub status: DeviceStatus,
    pub jobs: Vec<JobSummary>,
    pub detail: Option<JobDetail>,
    pub board: Option<Board>,
    pub board_view: BoardView,
    pub board_date: NaiveDate,
    /// What the board shows of its range.
    pub board_filter: BoardFilter,
    pub pick: Option<Pick>,
    pub conflicts: Vec<ConflictView>,
    /// The equipment query as typed, and the results for it.
    pub search_query: String,
    pub search: Vec<EquipmentView>,
    pub suggestions: Option<(String, Vec<SuggestionView>)>,
    pub editing: Option<JobDraft>,
    pub error: Option<CommandError>,
    /// Bumped when the device's data changed: screens reload what they show.
    pub revision: u64,
    /// A login link opened from outside the app (deep link), for the login screen.
    pub login_link: Option<String>,
}

impl AppState {
    pub fn new(lang: Lang, today: NaiveDate) -> Self {
        Self {
            lang,
            today,
            session: None,
            session_known: false,
            screen: Screen::Login,
            status: DeviceStatus::default(),
            jobs: Vec::new(),
            detail: None,
            board: None,
            board_view: BoardView::Day,
            board_date: today,
            board_filter: BoardFilter::default(),
            pick: None,
            conflicts: Vec::new(),
            search_query: String::new(),
            search: Vec::new(),
            suggestions: None,
            editing: None,
            error: None,
            revision: 0,
            login_link: None,
        }
    }

    /// The technician list's date range.
    pub fn list_range(&self) -> (NaiveDate, NaiveDate) {
        (self.today, self.today + Days::new(LIST_DAYS - 1))
    }

    /// The board's date range.
    pub fn board_range(&self) -> (NaiveDate, NaiveDate) {
        match self.board_view {
            BoardView::Day => (self.board_date, self.board_date),
            BoardView::Week => {
                let monday = week_start(self.board_date);
                (monday, monday + Days::new(6))
            }
        }
    }

    /// The assignment the keyboard pick would make.
    pub fn pick_target(&self) -> Option<AssignArgs> {
        let p = self.pick.as_ref()?;
        let board = self.board.as_ref()?;
        let tech = board.technicians.get(p.tech)?;
        let keep_time = self.board_view == BoardView::Week;
        Some(AssignArgs {
            id: p.job.clone(),
            technician: Some(tech.id.clone()),
            date: p.date.to_string(),
            start: if keep_time {
                None
            } else {
                Some(format!("{:02}:00", p.hour))
            },
        })
    }

    fn home(&self) -> Screen {
        match &self.session {
            Some(s) if s.is_office() => Screen::Board,
            Some(_) => Screen::Jobs,
            None => Screen::Login,
        }
    }
}

/// Monday of `d`'s week.
pub fn week_start(d: NaiveDate) -> NaiveDate {
    d - Days::new(u64::from(d.weekday().num_days_from_monday()))
}

/// The hour a `HH:MM` start falls in.
pub fn hour_of(start: Option<&str>) -> Option<u32> {
    start?.split(':').next()?.parse().ok()
}

/// The minute past the hour of an `HH:MM` start.
pub fn minute_of(start: Option<&str>) -> Option<u32> {
    start?.split(':').nth(1)?.parse().ok()
}

/// Jobs grouped by date, in the order given (the shell sorts by date and time).
pub fn by_day(jobs: &[JobSummary]) -> Vec<(String, Vec<&JobSummary>)> {
    let mut out: Vec<(String, Vec<&JobSummary>)> = Vec::new();
    for j in jobs {
        match out.last_mut() {
            Some((d, list)) if *d == j.date => list.push(j),
            _ => out.push((j.date.clone(), vec![j])),
        }
    }
    out
}

/// The jobs of one board cell: a technician and an hour of a day (day view) or a date (week view).
pub fn cell<'a>(
    board: &'a Board,
    tech: &str,
    date: NaiveDate,
    hour: Option<u32>,
) -> Vec<&'a JobSummary> {
    let date = date.to_string();
    board
        .jobs
        .iter()
        .filter(|j| j.technician.as_deref() == Some(tech) && j.date == date)
        .filter(|j| match hour {
            None => true,
            Some(h) => {
                let jh = hour_of(j.start.as_deref()).unwrap_or(FIRST_HOUR);
                jh.clamp(FIRST_HOUR, LAST_HOUR) == h
            }
        })
        .collect()
}

/// What the UI can be told.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Lang(Lang),
    Today(NaiveDate),
    Session(Option<Session>),
    Go(Screen),
    Status(DeviceStatus),
    Jobs(Vec<JobSummary>),
    Detail(Box<JobDetail>),
    Board(Board),
    BoardView(BoardView),
    BoardFilter(BoardFilter),
    /// Moves the board by whole days (day view) or weeks (week view).
    BoardShift(i64),
    BoardToday,
    Conflicts(Vec<ConflictView>),
    /// The equipment query changed (results for older queries are dropped when they arrive).
    SearchTyped(String),
    /// Results for a query.
    Search(String, Vec<EquipmentView>),
    SearchClear,
    Suggestions(String, Vec<SuggestionView>),
    CloseSuggestions,
    Edit(Option<JobDraft>),
    Pick(String),
    PickKey(BoardKey),
    Unpick,
    Error(CommandError),
    DismissError,
    /// A login link arrived by deep link.
    LoginLink(String),
    /// The device's data changed (a sync brought something, or an edit was made elsewhere).
    Changed,
}

fn shift(d: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        d + Days::new(days.unsigned_abs())
    } else {
        d - Days::new(days.unsigned_abs())
    }
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Lang(l) => s.lang = l,
            Action::Today(d) => {
                // The day rolled over while the app was open: follow it unless the board was
                // moved to another day on purpose.
                if s.board_date == s.today {
                    s.board_date = d;
                }
                s.today = d;
            }
            Action::Session(session) => {
                s.session_known = true;
                s.session = session;
                s.screen = s.home();
                if s.session.is_none() {
                    s.jobs.clear();
                    s.detail = None;
                    s.board = None;
                    s.conflicts.clear();
                }
            }
            Action::Go(screen) => {
                s.screen = if s.session.is_none() {
                    Screen::Login
                } else {
                    screen
                };
                s.search.clear();
                s.pick = None;
                if !matches!(s.screen, Screen::Job(_)) {
                    s.detail = None;
                }
            }
            Action::Status(st) => s.status = st,
            Action::Jobs(j) => s.jobs = j,
            Action::Detail(d) => {
                // An answer for a job no longer on screen is dropped.
                if s.screen == Screen::Job(d.summary.id.clone()) {
                    s.detail = Some(*d);
                }
            }
            // An answer read with a filter since changed (typing outruns the reads) is dropped.
            Action::Board(b) if b.filter != s.board_filter => {}
            Action::Board(b) => {
                if s.pick
                    .as_ref()
                    .is_some_and(|p| !b.jobs.iter().chain(&b.unassigned).any(|j| j.id == p.job))
                {
                    s.pick = None;
                }
                s.board = Some(b);
            }
            Action::BoardFilter(f) => s.board_filter = f,
            Action::BoardView(v) => {
                s.board_view = v;
                s.pick = None;
            }
            Action::BoardShift(n) => {
                let step = match s.board_view {
                    BoardView::Day => 1,
                    BoardView::Week => 7,
                };
                s.board_date = shift(s.board_date, n * step);
                s.pick = None;
            }
            Action::BoardToday => {
                s.board_date = s.today;
                s.pick = None;
            }
            Action::Conflicts(c) => s.conflicts = c,
            Action::SearchTyped(q) => {
                if q.trim().len() < 2 {
                    s.search.clear();
                }
                s.search_query = q;
            }
            Action::Search(q, r) => {
                if q == s.search_query {
                    s.search = r;
                }
            }
            Action::SearchClear => {
                s.search_query.clear();
                s.search.clear();
            }
            Action::Suggestions(job, list) => s.suggestions = Some((job, list)),
            Action::CloseSuggestions => s.suggestions = None,
            Action::Edit(d) => s.editing = d,
            Action::Pick(job) => {
                let Some(board) = &s.board else {
                    return self;
                };
                let found = board
                    .jobs
                    .iter()
                    .chain(&board.unassigned)
                    .find(|j| j.id == job);
                let Some(j) = found else {
                    return self;
                };
                let tech = j
                    .technician
                    .as_ref()
                    .and_then(|t| board.technicians.iter().position(|x| &x.id == t))
                    .unwrap_or(0);
                let date = j
                    .date
                    .parse()
                    .ok()
                    .filter(|d| {
                        let (from, to) = s.board_range();
                        (from..=to).contains(d)
                    })
                    .unwrap_or(s.board_date);
                let hour = hour_of(j.start.as_deref())
                    .unwrap_or(8)
                    .clamp(FIRST_HOUR, LAST_HOUR);
                s.pick = Some(Pick {
                    job,
                    tech,
                    date,
                    hour,
                });
            }
            Action::PickKey(k) => {
                let techs = s.board.as_ref().map_or(0, |b| b.technicians.len());
                let (from, to) = s.board_range();
                let view = s.board_view;
                let Some(p) = s.pick.as_mut() else {
                    return self;
                };
                match (k, view) {
                    (BoardKey::Left, BoardView::Day) => {
                        p.hour = p.hour.saturating_sub(1).max(FIRST_HOUR);
                    }
                    (BoardKey::Right, BoardView::Day) => p.hour = (p.hour + 1).min(LAST_HOUR),
                    (BoardKey::Left, BoardView::Week) => p.date = shift(p.date, -1).max(from),
                    (BoardKey::Right, BoardView::Week) => p.date = shift(p.date, 1).min(to),
                    (BoardKey::Up, _) => p.tech = p.tech.saturating_sub(1),
                    (BoardKey::Down, _) => p.tech = (p.tech + 1).min(techs.saturating_sub(1)),
                }
            }
            Action::Unpick => s.pick = None,
            Action::Error(e) => {
                if e.kind == ErrorKind::NotLoggedIn {
                    s.session = None;
                    s.screen = Screen::Login;
                }
                s.error = Some(e);
            }
            Action::DismissError => s.error = None,
            Action::Changed => s.revision += 1,
            Action::LoginLink(l) => s.login_link = Some(l),
        }
        Rc::new(s)
    }
}

#[cfg(test)]
mod tests;
