//! The dispatcher's board: technicians by hour (day) or by date (week), the unassigned queue,
//! drag and drop or keyboard rescheduling, suggestions with reasons, and the job editor.

use chrono::{Days, NaiveDate};
use shared::ipc::{AssignArgs, JobDraft, JobSummary, LocationHit};
use yew::prelude::*;

use super::{input_value, use_text};
use crate::app::{Store, change, spawn};
use crate::i18n::{self, Msg, t};
use crate::ipc;
use crate::state::{Action, BoardKey, BoardView, FIRST_HOUR, LAST_HOUR, Screen, cell, minute_of};

fn assign(store: &Store, args: AssignArgs) {
    change(store, ipc::job_assign(args));
    store.dispatch(Action::Unpick);
}

#[derive(Properties, PartialEq)]
struct CardProps {
    job: JobSummary,
    picked: bool,
    /// In the day view, the card is as long as the job (hour cells) and starts at its minute.
    #[prop_or_default]
    timed: bool,
}

/// The statuses the board shows, in the order of a job's day (the legend's order).
const LEGEND: [&str; 6] = [
    "scheduled",
    "en_route",
    "on_site",
    "completed",
    "could_not_complete",
    "cancelled",
];

/// Where a card sits in its hour cell and how many hour cells it covers (day view): the job's
/// minute past the hour and its duration, in hours.
fn span(j: &JobSummary) -> (f64, f64) {
    let minute = minute_of(j.start.as_deref()).unwrap_or(0);
    (
        f64::from(minute) / 60.0,
        f64::from(j.duration_min.max(15)) / 60.0,
    )
}

#[function_component(Card)]
fn card(p: &CardProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let j = &p.job;
    let ondragstart = {
        let id = j.id.clone();
        Callback::from(move |e: DragEvent| {
            if let Some(dt) = e.data_transfer() {
                let _ = dt.set_data("text/plain", &id);
                dt.set_effect_allowed("move");
            }
        })
    };
    let onclick = {
        let (store, id) = (store, j.id.clone());
        Callback::from(move |_| store.dispatch(Action::Pick(id.clone())))
    };
    let style = p.timed.then(|| {
        let (offset, hours) = span(j);
        format!("--offset: {offset:.3}; --span: {hours:.3}")
    });
    let urgent = matches!(j.priority.as_str(), "high" | "urgent");
    let place = if j.town.is_empty() {
        j.customer.clone()
    } else {
        format!("{} · {}", j.customer, j.town)
    };
    html! {
        <button class={classes!("card-job", format!("st-{}", j.status), format!("pr-{}", j.priority), p.picked.then_some("picked"), p.timed.then_some("timed"))}
            draggable="true" {ondragstart} {onclick} data-job={j.id.clone()} aria-pressed={p.picked.to_string()}
            {style} data-duration={j.duration_min.to_string()}
            title={format!("{} · {} · {}", j.title, j.customer, j.address)}>
            <span class="time">{ j.start.clone().unwrap_or_default() }</span>
            <span class="title">{ &j.title }</span>
            <span class="where">{ place }</span>
            if urgent { <span class="prio">{ i18n::priority(lang, &j.priority) }</span> }
            <span class="pill">{ i18n::status(lang, &j.status) }</span>
            if j.conflicts > 0 { <span class="badge" title={t(lang, Msg::Conflicts)}>{ "!" }</span> }
        </button>
    }
}

#[function_component(BoardPage)]
pub fn board_page() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let Some(board) = store.board.clone() else {
        return html! { <main class="board" aria-busy="true"></main> };
    };
    let (from, to) = store.board_range();
    let view = store.board_view;
    let columns: Vec<(NaiveDate, Option<u32>)> = match view {
        BoardView::Day => (FIRST_HOUR..=LAST_HOUR).map(|h| (from, Some(h))).collect(),
        BoardView::Week => (0..7).map(|i| (from + Days::new(i), None)).collect(),
    };
    let picked = store.pick.clone();
    let target = picked.as_ref().map(|p| (p.tech, p.date, p.hour));
    let onkeydown = {
        let store = store.clone();
        Callback::from(move |e: KeyboardEvent| {
            if store.pick.is_none() {
                return;
            }
            let key = match e.key().as_str() {
                "ArrowLeft" => Some(BoardKey::Left),
                "ArrowRight" => Some(BoardKey::Right),
                "ArrowUp" => Some(BoardKey::Up),
                "ArrowDown" => Some(BoardKey::Down),
                "Enter" => {
                    e.prevent_default();
                    if let Some(args) = store.pick_target() {
                        assign(&store, args);
                    }
                    None
                }
                "Escape" => {
                    store.dispatch(Action::Unpick);
                    None
                }
                _ => None,
            };
            if let Some(k) = key {
                e.prevent_default();
                store.dispatch(Action::PickKey(k));
            }
        })
    };
    let nav = |a: Action| {
        let store = store.clone();
        Callback::from(move |_| store.dispatch(a.clone()))
    };
    let new_job = {
        let store = store.clone();
        let date = from.to_string();
        Callback::from(move |_| {
            store.dispatch(Action::Edit(Some(JobDraft {
                id: None,
                location: None,
                title: String::new(),
                description: String::new(),
                date: date.clone(),
                start: Some("08:00".into()),
                duration_min: 60,
                priority: "normal".into(),
            })));
        })
    };
    let picked_job = picked.as_ref().and_then(|p| {
        board
            .jobs
            .iter()
            .chain(&board.unassigned)
            .find(|j| j.id == p.job)
            .cloned()
    });
    html! {
        <main class="board" id="board" tabindex="0" {onkeydown}>
            <div class="toolbar">
                <div role="group">
                    <button id="view-day" aria-pressed={(view == BoardView::Day).to_string()} onclick={nav(Action::BoardView(BoardView::Day))}>{ t(lang, Msg::Day) }</button>
                    <button id="view-week" aria-pressed={(view == BoardView::Week).to_string()} onclick={nav(Action::BoardView(BoardView::Week))}>{ t(lang, Msg::Week) }</button>
                </div>
                <div role="group">
                    <button id="board-prev" onclick={nav(Action::BoardShift(-1))} aria-label={t(lang, Msg::Previous)}>{ "‹" }</button>
                    <button id="board-today" onclick={nav(Action::BoardToday)}>{ t(lang, Msg::Today) }</button>
                    <button id="board-next" onclick={nav(Action::BoardShift(1))} aria-label={t(lang, Msg::Next)}>{ "›" }</button>
                </div>
                <strong id="board-range">{ if from == to { from.to_string() } else { format!("{from} → {to}") } }</strong>
                <button id="new-job" onclick={new_job}>{ "+ " }{ t(lang, Msg::NewJob) }</button>
            </div>
            <Filters />
            <p class="help">{ t(lang, Msg::BoardHelp) }</p>
            <ul class="legend" id="legend" aria-label={t(lang, Msg::Legend)}>
                { for LEGEND.iter().map(|st| html! {
                    <li class={format!("st-{st}")} data-status={*st}>{ i18n::status(lang, st) }</li>
                }) }
            </ul>
            <Outages />
            if let Some(j) = picked_job { <PickBar job={j} /> }
            <div class="board-layout">
                <div class="grid-wrap">
                    <table class={classes!("grid", (view == BoardView::Day).then_some("day"))}>
                        <thead><tr>
                            <th scope="col">{ t(lang, Msg::Technician) }</th>
                            { for columns.iter().map(|(d, h)| html! {
                                <th scope="col">{ match h { Some(h) => format!("{h:02}h"), None => d.format("%a %d").to_string() } }</th>
                            }) }
                        </tr></thead>
                        <tbody>
                            { for board.technicians.iter().enumerate().map(|(ti, tech)| html! {
                                <tr key={tech.id.clone()}>
                                    <th scope="row">{ &tech.name }
                                        if let Some(s) = &tech.shift { <span class="help">{ " " }{ s }</span> }
                                    </th>
                                    { for columns.iter().map(|(d, h)| {
                                        let jobs = cell(&board, &tech.id, *d, *h);
                                        let is_target = target.is_some_and(|(t, td, th)| t == ti && td == *d && (h.is_none() || *h == Some(th)));
                                        let ondragover = Callback::from(|e: DragEvent| e.prevent_default());
                                        let ondrop = {
                                            let (store, tech, d, h) = (store.clone(), tech.id.clone(), *d, *h);
                                            Callback::from(move |e: DragEvent| {
                                                e.prevent_default();
                                                let Some(id) = e.data_transfer().and_then(|dt| dt.get_data("text/plain").ok()) else { return };
                                                assign(&store, AssignArgs {
                                                    id,
                                                    technician: Some(tech.clone()),
                                                    date: d.to_string(),
                                                    start: h.map(|h| format!("{h:02}:00")),
                                                });
                                            })
                                        };
                                        html! {
                                            <td class={classes!("slot", is_target.then_some("target"))} {ondragover} {ondrop}
                                                data-tech={tech.id.clone()} data-date={d.to_string()} data-hour={h.map(|h| h.to_string())}>
                                                { for jobs.into_iter().map(|j| html! {
                                                    <Card job={j.clone()} picked={picked.as_ref().is_some_and(|p| p.job == j.id)} timed={h.is_some()} />
                                                }) }
                                            </td>
                                        }
                                    }) }
                                </tr>
                            }) }
                        </tbody>
                    </table>
                </div>
                <aside class={classes!("queue", board.unassigned.is_empty().then_some("empty"))} id="unassigned"
                    ondragover={Callback::from(|e: DragEvent| e.prevent_default())}
                    ondrop={{
                        let store = store.clone();
                        let date = from.to_string();
                        Callback::from(move |e: DragEvent| {
                            e.prevent_default();
                            let Some(id) = e.data_transfer().and_then(|dt| dt.get_data("text/plain").ok()) else { return };
                            assign(&store, AssignArgs { id, technician: None, date: date.clone(), start: None });
                        })
                    }}>
                    <h2>{ t(lang, Msg::Unassigned) }{ " (" }{ board.unassigned.len() }{ ")" }</h2>
                    if board.unassigned.is_empty() { <p class="help">{ t(lang, Msg::NothingUnassigned) }</p> }
                    { for board.unassigned.iter().map(|j| html! {
                        <div class="queued" key={j.id.clone()}>
                            <Card job={j.clone()} picked={picked.as_ref().is_some_and(|p| p.job == j.id)} />
                            <span class="help">{ &j.date }{ " · " }{ &j.customer }</span>
                        </div>
                    }) }
                </aside>
            </div>
            <Suggestions />
            <Editor />
        </main>
    }
}

/// Search and filters: customer, address or phone; statuses; town; job type; required skill.
/// Each change reloads the board from the device (no network).
#[function_component(Filters)]
fn filters() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let f = store.board_filter.clone();
    let Some(board) = store.board.clone() else {
        return html! {};
    };
    let set = |change: fn(&mut shared::ipc::BoardFilter, String)| {
        let (store, f) = (store.clone(), f.clone());
        Callback::from(move |v: String| {
            let mut next = f.clone();
            change(&mut next, v);
            store.dispatch(Action::BoardFilter(next));
        })
    };
    let on_query = {
        let cb = set(|f, v| f.query = v);
        Callback::from(move |e: InputEvent| cb.emit(input_value(&e)))
    };
    let pick = |change: fn(&mut shared::ipc::BoardFilter, String)| {
        let cb = set(change);
        Callback::from(move |e: Event| cb.emit(input_value(&e)))
    };
    let clear = {
        let store = store.clone();
        Callback::from(move |_| {
            store.dispatch(Action::BoardFilter(shared::ipc::BoardFilter::default()));
        })
    };
    html! {
        <div class="filters" id="board-filters" role="search" aria-label={t(lang, Msg::Filters)}>
            <input id="board-search" type="search" placeholder={t(lang, Msg::FilterSearch)}
                aria-label={t(lang, Msg::FilterSearch)} value={f.query.clone()} oninput={on_query} />
            <div role="group" class="chips" aria-label={t(lang, Msg::Legend)}>
                { for std::iter::once(&"open").chain(LEGEND.iter()).map(|st| {
                    let on = f.statuses.iter().any(|s| s == st);
                    let onclick = {
                        let (store, f, st) = (store.clone(), f.clone(), (*st).to_owned());
                        Callback::from(move |_| {
                            let mut next = f.clone();
                            if next.statuses.contains(&st) {
                                next.statuses.retain(|s| *s != st);
                            } else {
                                next.statuses.push(st.clone());
                            }
                            store.dispatch(Action::BoardFilter(next));
                        })
                    };
                    html! {
                        <button class={classes!("chip", format!("st-{st}"))} id={format!("filter-status-{st}")}
                            aria-pressed={on.to_string()} {onclick}>{ i18n::status(lang, st) }</button>
                    }
                }) }
            </div>
            <select id="filter-town" aria-label={t(lang, Msg::AllTowns)} onchange={pick(|f, v| f.town = (!v.is_empty()).then_some(v))}>
                <option value="" selected={f.town.is_none()}>{ t(lang, Msg::AllTowns) }</option>
                { for board.towns.iter().map(|x| html! { <option value={x.clone()} selected={f.town.as_deref() == Some(x.as_str())}>{ x }</option> }) }
            </select>
            <select id="filter-kind" aria-label={t(lang, Msg::AllKinds)} onchange={pick(|f, v| f.kind = (!v.is_empty()).then_some(v))}>
                <option value="" selected={f.kind.is_none()}>{ t(lang, Msg::AllKinds) }</option>
                { for board.kinds.iter().map(|x| html! { <option value={x.clone()} selected={f.kind.as_deref() == Some(x.as_str())}>{ x }</option> }) }
            </select>
            if !board.skills.is_empty() {
                <select id="filter-skill" aria-label={t(lang, Msg::AllSkills)} onchange={pick(|f, v| f.skill = (!v.is_empty()).then_some(v))}>
                    <option value="" selected={f.skill.is_none()}>{ t(lang, Msg::AllSkills) }</option>
                    { for board.skills.iter().map(|x| html! { <option value={x.id.clone()} selected={f.skill.as_deref() == Some(x.id.as_str())}>{ &x.label }</option> }) }
                </select>
            }
            if !f.is_empty() {
                <span class="help" id="filter-hidden">{ format!("{} {}", board.hidden, t(lang, Msg::HiddenByFilter)) }</span>
                <button class="link" id="filter-clear" onclick={clear}>{ t(lang, Msg::ClearFilters) }</button>
            }
        </div>
    }
}

/// How often the outages are read again while the board is open.
const OUTAGES_EVERY_MS: i32 = 10_000;

/// The access network's open incidents above the board: port outages and silent OLTs first,
/// then customers without signal, each with the jobs of the customers behind it (a tap opens
/// the job). Read from the server when the board opens, every 10 s and after each sync; shows
/// nothing when no OLT is configured or the server cannot be reached.
#[function_component(Outages)]
fn outages() -> Html {
    use shared::network::{Incident, IncidentKind, NetworkPicture};
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let picture = use_state(|| None::<NetworkPicture>);
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        use_effect_with((), move |()| {
            let t = tick;
            let every = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
                t.set(t.wrapping_add(1));
            });
            let id = web_sys::window().and_then(|w| {
                w.set_interval_with_callback_and_timeout_and_arguments_0(
                    wasm_bindgen::JsCast::unchecked_ref(every.as_ref()),
                    OUTAGES_EVERY_MS,
                )
                .ok()
            });
            move || {
                if let (Some(w), Some(id)) = (web_sys::window(), id) {
                    w.clear_interval_with_handle(id);
                }
                drop(every);
            }
        });
    }
    {
        let picture = picture.clone();
        use_effect_with((*tick, store.revision), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(v) = ipc::network_picture().await {
                    picture.set(v.picture);
                }
            });
        });
    }
    let Some(p) = (*picture).clone() else {
        return html! {};
    };
    let mut open: Vec<&Incident> = p.incidents.iter().filter(|i| i.ended.is_none()).collect();
    open.sort_by_key(|i| (i.kind == IncidentKind::CustomerFault, -i.started));
    let monitors: Vec<String> = p
        .monitors_down
        .iter()
        .map(|m| m.name.clone())
        .chain(p.olts.iter().filter_map(|o| {
            o.monitor
                .as_ref()
                .map(|m| format!("{} ({})", m.name, o.name))
        }))
        .collect();
    if open.is_empty() && monitors.is_empty() {
        return html! {};
    }
    let now = js_sys::Date::now() as i64;
    html! {
        <section class="outages" id="outages" aria-label={t(lang, Msg::Outages)}>
            <h2>{ t(lang, Msg::Outages) }{ format!(" ({})", open.len()) }</h2>
            <ul>
                { for open.iter().map(|i| {
                    let jobs: Vec<(String, String, String)> = i.affected.iter().flat_map(|a| {
                        a.jobs.iter().map(move |j| (j.id.to_string(), j.title.clone(), a.customer_name.clone().unwrap_or_default()))
                    }).collect();
                    let customers: Vec<String> = i.affected.iter().filter_map(|a| a.customer_name.clone()).collect();
                    html! {
                        <li class={classes!("incident", format!("inc-{}", match i.kind { IncidentKind::PortOutage => "port", IncidentKind::CustomerFault => "customer", IncidentKind::OltUnreachable => "olt" }))}
                            data-incident={i.id.to_string()}>
                            <strong>{ super::network::incident_word(lang, i.kind) }</strong>
                            { " · " }{ &i.olt }
                            if let Some(port) = &i.port { { " " }{ port } }
                            if let Some(of) = i.of { { format!(" · {}/{of} {}", i.onus.len(), t(lang, Msg::OnusDown)) } }
                            if i.kind == IncidentKind::CustomerFault {
                                if let Some(o) = i.onus.first() { { " · " }{ super::network::onu_word(lang, o.state) } }
                            }
                            { " · " }{ i18n::ago(lang, now, i.started) }
                            if !customers.is_empty() { <p class="help">{ customers.join(", ") }</p> }
                            if i.kind != IncidentKind::OltUnreachable {
                                if jobs.is_empty() {
                                    <p class="help">{ t(lang, Msg::NoJobsAffected) }</p>
                                } else {
                                    <p class="affected-jobs">{ t(lang, Msg::JobsAffected) }{ " : " }
                                        { for jobs.into_iter().map(|(id, title, customer)| {
                                            let onclick = {
                                                let (store, id) = (store.clone(), id.clone());
                                                Callback::from(move |_| store.dispatch(Action::Go(Screen::Job(id.clone()))))
                                            };
                                            html! { <button class="link affected-job" data-job={id} {onclick}>{ title }{ " — " }{ customer }</button> }
                                        }) }
                                    </p>
                                }
                            }
                        </li>
                    }
                }) }
                { for monitors.iter().map(|m| html! {
                    <li class="incident inc-monitor"><strong>{ t(lang, Msg::MonitorDown) }</strong>{ " · " }{ m }</li>
                }) }
            </ul>
        </section>
    }
}

/// Actions on the picked job.
#[derive(Properties, PartialEq)]
struct PickBarProps {
    job: JobSummary,
}

#[function_component(PickBar)]
fn pick_bar(p: &PickBarProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let j = p.job.clone();
    let open = {
        let (store, id) = (store.clone(), j.id.clone());
        Callback::from(move |_| store.dispatch(Action::Go(Screen::Job(id.clone()))))
    };
    let suggest = {
        let (store, id) = (store.clone(), j.id.clone());
        Callback::from(move |_| {
            let id = id.clone();
            spawn(&store, async move {
                let list = ipc::job_suggest(id.clone()).await?;
                Ok(Action::Suggestions(id, list))
            });
        })
    };
    let edit = {
        let (store, j) = (store.clone(), j.clone());
        Callback::from(move |_| {
            let (store2, id) = (store.clone(), j.id.clone());
            spawn(&store, async move {
                let d = ipc::job_get(id).await?;
                store2.dispatch(Action::Unpick);
                Ok(Action::Edit(Some(JobDraft {
                    id: Some(d.summary.id.clone()),
                    location: None,
                    title: d.summary.title.clone(),
                    description: d.description.clone(),
                    date: d.summary.date.clone(),
                    start: d.summary.start.clone(),
                    duration_min: d.summary.duration_min,
                    priority: d.summary.priority,
                })))
            });
        })
    };
    let unassign = {
        let (store, j) = (store.clone(), j.clone());
        Callback::from(move |_| {
            assign(
                &store,
                AssignArgs {
                    id: j.id.clone(),
                    technician: None,
                    date: j.date.clone(),
                    start: None,
                },
            );
        })
    };
    let confirm = {
        let store = store;
        Callback::from(move |_| {
            if let Some(args) = store.pick_target() {
                assign(&store, args);
            }
        })
    };
    html! {
        <div class="pickbar" id="pickbar" role="toolbar">
            <strong>{ &j.title }</strong>{ " · " }{ &j.customer }
            <button id="pick-open" onclick={open}>{ "→" }</button>
            <button id="pick-edit" onclick={edit}>{ t(lang, Msg::Edit) }</button>
            <button id="pick-suggest" onclick={suggest}>{ t(lang, Msg::Suggest) }</button>
            <button id="pick-assign" onclick={confirm}>{ t(lang, Msg::Assign) }</button>
            if j.technician.is_some() { <button onclick={unassign}>{ t(lang, Msg::Unassign) }</button> }
        </div>
    }
}

#[function_component(Suggestions)]
fn suggestions() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let Some((job, list)) = store.suggestions.clone() else {
        return html! {};
    };
    let close = {
        let store = store.clone();
        Callback::from(move |_| store.dispatch(Action::CloseSuggestions))
    };
    let found = store.board.as_ref().and_then(|b| {
        b.jobs
            .iter()
            .chain(&b.unassigned)
            .find(|j| j.id == job)
            .cloned()
    });
    html! {
        <div class="panel" id="suggestions" role="dialog" aria-label={t(lang, Msg::Suggest)}>
            <h2>{ t(lang, Msg::Suggest) }</h2>
            <ol>{ for list.iter().map(|s| {
                let onclick = {
                    let (store, s, found) = (store.clone(), s.clone(), found.clone());
                    Callback::from(move |_| {
                        if let Some(j) = &found {
                            assign(&store, AssignArgs { id: j.id.clone(), technician: Some(s.technician.clone()), date: j.date.clone(), start: j.start.clone() });
                        }
                        store.dispatch(Action::CloseSuggestions);
                    })
                };
                html! {
                    <li class={if s.eligible { "ok" } else { "no" }}>
                        <strong>{ &s.name }</strong>{ " — " }{ t(lang, if s.eligible { Msg::Eligible } else { Msg::NotEligible }) }
                        <ul class="reasons">{ for s.reasons.iter().map(|r| html! { <li>{ i18n::reason(lang, r) }</li> }) }</ul>
                        if s.eligible { <button {onclick}>{ t(lang, Msg::Assign) }</button> }
                    </li>
                }
            }) }</ol>
            <button class="link" onclick={close}>{ t(lang, Msg::Dismiss) }</button>
        </div>
    }
}

/// Creates or edits a job.
#[function_component(Editor)]
fn editor() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let draft = use_state(|| None::<JobDraft>);
    let hits = use_state(Vec::<LocationHit>::new);
    let (loc_query, on_loc_query_text) = use_text("");
    {
        let draft = draft.clone();
        use_effect_with(store.editing.clone(), move |e| draft.set(e.clone()));
    }
    let Some(d) = (*draft).clone() else {
        return html! {};
    };
    let field = |set: fn(&mut JobDraft, String)| {
        let draft = draft.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(mut d) = (*draft).clone() {
                set(&mut d, input_value(&e));
                draft.set(Some(d));
            }
        })
    };
    let on_priority = {
        let draft = draft.clone();
        Callback::from(move |e: Event| {
            if let Some(mut d) = (*draft).clone() {
                d.priority = input_value(&e);
                draft.set(Some(d));
            }
        })
    };
    let on_loc_query = {
        let (store, hits, cb) = (store.clone(), hits.clone(), on_loc_query_text);
        Callback::from(move |e: InputEvent| {
            let q = input_value(&e);
            cb.emit(e);
            let hits = hits.clone();
            spawn(&store, async move {
                let r = ipc::location_search(q).await?;
                hits.set(r);
                Ok(Action::DismissError)
            });
        })
    };
    let cancel = {
        let store = store.clone();
        Callback::from(move |_| store.dispatch(Action::Edit(None)))
    };
    let save = {
        let (store, draft) = (store, draft.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(d) = (*draft).clone() else { return };
            let store2 = store.clone();
            spawn(&store, async move {
                ipc::job_save(d).await?;
                store2.dispatch(Action::Edit(None));
                Ok(Action::Changed)
            });
        })
    };
    html! {
        <div class="panel" id="editor" role="dialog" aria-label={t(lang, if d.id.is_some() { Msg::Edit } else { Msg::NewJob })}>
            <form onsubmit={save}>
                <h2>{ t(lang, if d.id.is_some() { Msg::Edit } else { Msg::NewJob }) }</h2>
                if d.id.is_none() {
                    <label>{ t(lang, Msg::Location) }
                        <input id="edit-location-query" type="search" value={(*loc_query).clone()} oninput={on_loc_query} />
                    </label>
                    <ul class="results">{ for hits.iter().map(|h| {
                        let pick = {
                            let (draft, id) = (draft.clone(), h.id.clone());
                            Callback::from(move |_| {
                                if let Some(mut d) = (*draft).clone() {
                                    d.location = Some(id.clone());
                                    draft.set(Some(d));
                                }
                            })
                        };
                        let chosen = d.location.as_deref() == Some(h.id.as_str());
                        html! { <li><button type="button" aria-pressed={chosen.to_string()} onclick={pick}>{ &h.text }</button></li> }
                    }) }</ul>
                }
                <label>{ t(lang, Msg::Title) }<input id="edit-title" required=true value={d.title.clone()} oninput={field(|d, v| d.title = v)} /></label>
                <label>{ t(lang, Msg::Description) }<textarea id="edit-description" value={d.description.clone()} oninput={field(|d, v| d.description = v)}></textarea></label>
                <div class="row">
                    <label>{ t(lang, Msg::Date) }<input id="edit-date" type="date" required=true value={d.date.clone()} oninput={field(|d, v| d.date = v)} /></label>
                    <label>{ t(lang, Msg::Start) }<input id="edit-start" type="time" value={d.start.clone().unwrap_or_default()} oninput={field(|d, v| d.start = (!v.is_empty()).then_some(v))} /></label>
                    <label>{ t(lang, Msg::Duration) }<input id="edit-duration" type="number" min="5" max="1440" value={d.duration_min.to_string()} oninput={field(|d, v| d.duration_min = v.parse().unwrap_or(d.duration_min))} /></label>
                    <label>{ t(lang, Msg::Priority) }
                        <select id="edit-priority" onchange={on_priority}>
                            { for ["low", "normal", "high", "urgent"].iter().map(|p| html! {
                                <option value={*p} selected={d.priority == *p}>{ i18n::priority(lang, p) }</option>
                            }) }
                        </select>
                    </label>
                </div>
                <div class="row">
                    <button type="submit" id="edit-save">{ t(lang, Msg::Save) }</button>
                    <button type="button" class="link" onclick={cancel}>{ t(lang, Msg::Cancel) }</button>
                </div>
            </form>
        </div>
    }
}
