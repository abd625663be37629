use super::*;
use shared::ipc::TechnicianView;

fn day(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn job(id: &str, date: &str, start: Option<&str>, tech: Option<&str>) -> JobSummary {
    JobSummary {
        id: id.into(),
        date: date.into(),
        start: start.map(Into::into),
        duration_min: 60,
        status: "scheduled".into(),
        priority: "normal".into(),
        title: format!("job {id}"),
        technician: tech.map(Into::into),
        customer: "Client".into(),
        address: "1 rue".into(),
        town: "Gatineau".into(),
        conflicts: 0,
    }
}

fn board() -> Board {
    Board {
        from: "2026-11-23".into(),
        to: "2026-11-23".into(),
        technicians: vec![
            TechnicianView {
                id: "t1".into(),
                name: "Ana".into(),
                shift: None,
            },
            TechnicianView {
                id: "t2".into(),
                name: "Bo".into(),
                shift: None,
            },
        ],
        jobs: vec![
            job("a", "2026-11-23", Some("09:30"), Some("t1")),
            job("b", "2026-11-23", None, Some("t2")),
            job("c", "2026-11-24", Some("13:00"), Some("t1")),
        ],
        unassigned: vec![job("u", "2026-11-20", None, None)],
        towns: Vec::new(),
        kinds: Vec::new(),
        skills: Vec::new(),
        hidden: 0,
        filter: Default::default(),
    }
}

fn session(role: &str) -> Session {
    Session {
        server: "http://s".into(),
        role: role.into(),
        technician: (role == "technician").then(|| "t1".into()),
        display_name: "x".into(),
        mobile: false,
    }
}

fn run(s: AppState, actions: impl IntoIterator<Item = Action>) -> AppState {
    let mut rc = Rc::new(s);
    for a in actions {
        rc = rc.reduce(a);
    }
    (*rc).clone()
}

fn office_on_board() -> AppState {
    run(
        AppState::new(Lang::Fr, day("2026-11-23")),
        [
            Action::Session(Some(session("dispatcher"))),
            Action::Board(board()),
        ],
    )
}

#[test]
fn login_lands_each_role_on_its_home_and_logout_clears_data() {
    let s = AppState::new(Lang::Fr, day("2026-11-23"));
    assert_eq!(s.screen, Screen::Login);
    let tech = run(s.clone(), [Action::Session(Some(session("technician")))]);
    assert_eq!(tech.screen, Screen::Jobs);
    let office = run(s.clone(), [Action::Session(Some(session("dispatcher")))]);
    assert_eq!(office.screen, Screen::Board);
    let out = run(
        office,
        [
            Action::Jobs(vec![job("a", "2026-11-23", None, None)]),
            Action::Session(None),
        ],
    );
    assert_eq!(out.screen, Screen::Login);
    assert!(out.jobs.is_empty() && out.board.is_none());
    // Navigation without a session stays on the login screen.
    let nav = run(s, [Action::Go(Screen::Board)]);
    assert_eq!(nav.screen, Screen::Login);
}

#[test]
fn a_lost_session_error_returns_to_login_and_keeps_the_message() {
    let s = run(
        AppState::new(Lang::Fr, day("2026-11-23")),
        [
            Action::Session(Some(session("technician"))),
            Action::Error(CommandError::new(ErrorKind::NotLoggedIn, "not logged in")),
        ],
    );
    assert_eq!(s.screen, Screen::Login);
    assert_eq!(
        s.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::NotLoggedIn)
    );
    let s = run(s, [Action::DismissError]);
    assert!(s.error.is_none());
    // Other errors keep the screen.
    let s = run(
        s,
        [
            Action::Session(Some(session("technician"))),
            Action::Error(CommandError::new(ErrorKind::Offline, "server unreachable")),
        ],
    );
    assert_eq!(s.screen, Screen::Jobs);
}

#[test]
fn a_late_detail_for_another_job_is_dropped() {
    let s = run(
        AppState::new(Lang::Fr, day("2026-11-23")),
        [
            Action::Session(Some(session("technician"))),
            Action::Go(Screen::Job("b".into())),
        ],
    );
    let detail = |id: &str| JobDetail {
        summary: job(id, "2026-11-23", None, None),
        description: String::new(),
        technician_name: None,
        customer_phone: None,
        customer_email: None,
        gps: None,
        olt_port: None,
        vlan: None,
        network_notes: String::new(),
        contacts: vec![],
        equipment: vec![],
        subscriptions: vec![],
        history: vec![],
        notes: vec![],
        checklist: vec![],
        materials: vec![],
        equipment_moves: vec![],
        photos: vec![],
        signature: None,
        checked_in: None,
        time_on_site_min: None,
        next_statuses: vec![],
        overridden: vec![],
    };
    let s = run(s, [Action::Detail(Box::new(detail("a")))]);
    assert!(s.detail.is_none());
    let s = run(s, [Action::Detail(Box::new(detail("b")))]);
    assert_eq!(s.detail.as_ref().map(|d| d.summary.id.as_str()), Some("b"));
    let s = run(s, [Action::Go(Screen::Jobs)]);
    assert!(s.detail.is_none());
}

#[test]
fn list_groups_by_day_and_spans_two_weeks() {
    let jobs = vec![
        job("a", "2026-11-23", Some("08:00"), None),
        job("b", "2026-11-23", Some("10:00"), None),
        job("c", "2026-11-25", None, None),
    ];
    let g = by_day(&jobs);
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].0, "2026-11-23");
    assert_eq!(
        g[0].1.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(g[1].1.len(), 1);
    let s = AppState::new(Lang::Fr, day("2026-11-23"));
    assert_eq!(s.list_range(), (day("2026-11-23"), day("2026-12-06")));
}

#[test]
fn board_ranges_cells_and_navigation() {
    let s = office_on_board();
    assert_eq!(s.board_range(), (day("2026-11-23"), day("2026-11-23")));
    let b = s.board.as_ref().expect("board");
    let ids = |v: Vec<&JobSummary>| v.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(cell(b, "t1", day("2026-11-23"), Some(9))), ["a"]);
    assert!(cell(b, "t1", day("2026-11-23"), Some(10)).is_empty());
    // A job without a start time sits in the first hour.
    assert_eq!(
        ids(cell(b, "t2", day("2026-11-23"), Some(FIRST_HOUR))),
        ["b"]
    );
    assert_eq!(ids(cell(b, "t1", day("2026-11-24"), None)), ["c"]);

    // 2026-11-25 is a Wednesday: the week runs Monday 23 to Sunday 29.
    let w = run(
        s,
        [Action::BoardView(BoardView::Week), Action::BoardShift(1)],
    );
    assert_eq!(w.board_range(), (day("2026-11-30"), day("2026-12-06")));
    let w = run(w, [Action::BoardShift(-1), Action::BoardToday]);
    assert_eq!(w.board_range(), (day("2026-11-23"), day("2026-11-29")));
    let d = run(
        w,
        [Action::BoardView(BoardView::Day), Action::BoardShift(-2)],
    );
    assert_eq!(d.board_date, day("2026-11-21"));
    assert_eq!(week_start(day("2026-11-29")), day("2026-11-23"));
}

#[test]
fn keyboard_reschedule_moves_within_the_board_and_yields_the_assignment() {
    let s = run(office_on_board(), [Action::Pick("a".into())]);
    assert_eq!(
        s.pick,
        Some(Pick {
            job: "a".into(),
            tech: 0,
            date: day("2026-11-23"),
            hour: 9
        })
    );
    let s = run(
        s,
        [
            Action::PickKey(BoardKey::Right),
            Action::PickKey(BoardKey::Right),
            Action::PickKey(BoardKey::Down),
            Action::PickKey(BoardKey::Down),
        ],
    );
    let target = s.pick_target().expect("target");
    assert_eq!(
        target.technician.as_deref(),
        Some("t2"),
        "clamped to the last technician"
    );
    assert_eq!(target.start.as_deref(), Some("11:00"));
    assert_eq!(target.date, "2026-11-23");
    // Hours stop at the board's edges.
    let mut s = s;
    for _ in 0..30 {
        s = run(s, [Action::PickKey(BoardKey::Left)]);
    }
    assert_eq!(s.pick.as_ref().map(|p| p.hour), Some(FIRST_HOUR));
    // The week view moves days and keeps the job's time.
    let w = run(
        office_on_board(),
        [
            Action::BoardView(BoardView::Week),
            Action::Pick("u".into()),
            Action::PickKey(BoardKey::Right),
        ],
    );
    let t = w.pick_target().expect("target");
    assert_eq!((t.date.as_str(), t.start), ("2026-11-24", None));
    assert_eq!(t.technician.as_deref(), Some("t1"));
    // Escape, or the job leaving the board, drops the pick.
    assert!(run(w.clone(), [Action::Unpick]).pick.is_none());
    let mut gone = board();
    gone.unassigned.clear();
    assert!(run(w, [Action::Board(gone)]).pick.is_none());
    // Picking an unknown job does nothing.
    assert!(
        run(office_on_board(), [Action::Pick("zz".into())])
            .pick
            .is_none()
    );
}

#[test]
fn midnight_moves_today_and_the_board_unless_it_was_moved_on_purpose() {
    let s = office_on_board();
    let next = run(s.clone(), [Action::Today(day("2026-11-24"))]);
    assert_eq!(
        (next.today, next.board_date),
        (day("2026-11-24"), day("2026-11-24"))
    );
    let moved = run(s, [Action::BoardShift(3), Action::Today(day("2026-11-24"))]);
    assert_eq!(moved.board_date, day("2026-11-26"));
    let linked = run(moved, [Action::LoginLink("fsm://login?token=a.b.c".into())]);
    assert_eq!(
        linked.login_link.as_deref(),
        Some("fsm://login?token=a.b.c")
    );
}

#[test]
fn search_results_for_an_older_query_are_dropped() {
    let hit = |serial: &str| EquipmentView {
        id: "e".into(),
        serial: serial.into(),
        mac: None,
        kind: "ont".into(),
        status: "active".into(),
        model: None,
        location: None,
    };
    let s = run(
        AppState::new(Lang::Fr, day("2026-11-23")),
        [
            Action::SearchTyped("ZT".into()),
            Action::SearchTyped("ZTEG1".into()),
            // The answer for "ZTEG1" arrives first, then the slower one for "ZT".
            Action::Search("ZTEG1".into(), vec![hit("ZTEG1234")]),
            Action::Search("ZT".into(), vec![hit("ZTAA"), hit("ZTEG1234")]),
        ],
    );
    assert_eq!(s.search.len(), 1);
    assert_eq!(s.search[0].serial, "ZTEG1234");
    // Under two characters there is nothing to search: the list empties at once.
    let s = run(s, [Action::SearchTyped("Z".into())]);
    assert!(s.search.is_empty());
    let s = run(
        s,
        [Action::SearchTyped("ZTEG1".into()), Action::SearchClear],
    );
    assert!(s.search.is_empty() && s.search_query.is_empty());
}

#[test]
fn a_board_read_for_an_older_filter_is_dropped() {
    let s = office_on_board();
    let typed = |q: &str| shared::ipc::BoardFilter {
        query: q.into(),
        ..Default::default()
    };
    let s = run(s, [Action::BoardFilter(typed("tremb"))]);
    // The answer for "t" (typed before) arrives after the filter moved on: dropped.
    let mut old = board();
    old.filter = typed("t");
    old.jobs.clear();
    let s = run(s, [Action::Board(old)]);
    assert_eq!(s.board.as_ref().map(|b| b.jobs.len()), Some(3));
    let mut current = board();
    current.filter = typed("tremb");
    current.jobs.truncate(1);
    let s = run(s, [Action::Board(current)]);
    assert_eq!(s.board.as_ref().map(|b| b.jobs.len()), Some(1));
}
