//! The root component: state, navigation, the status bar, and loading each screen's data.

use std::future::Future;

use chrono::NaiveDate;
use shared::ipc::{CommandError, DeviceStatus, event};
use yew::prelude::*;

use crate::i18n::{Lang, Msg, t};
use crate::ipc;
use crate::pages;
use crate::state::{Action, AppState, Screen};

/// The state handle every page gets from the context.
pub type Store = UseReducerHandle<AppState>;

/// Runs `fut` and dispatches its action, or its error.
pub fn spawn<F>(store: &Store, fut: F)
where
    F: Future<Output = Result<Action, CommandError>> + 'static,
{
    let store = store.clone();
    wasm_bindgen_futures::spawn_local(async move {
        match fut.await {
            Ok(a) => store.dispatch(a),
            Err(e) => store.dispatch(Action::Error(e)),
        }
    });
}

/// Runs a command that changes data, then marks the data changed.
pub fn change<F, T>(store: &Store, fut: F)
where
    F: Future<Output = Result<T, CommandError>> + 'static,
    T: 'static,
{
    spawn(store, async move { fut.await.map(|_| Action::Changed) });
}

fn today() -> NaiveDate {
    let d = js_sys::Date::new_0();
    NaiveDate::from_ymd_opt(d.get_full_year() as i32, d.get_month() + 1, d.get_date())
        .unwrap_or_default()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn initial_lang() -> Lang {
    storage()
        .and_then(|s| s.get_item("lang").ok().flatten())
        .or_else(|| web_sys::window()?.navigator().language())
        .map_or(Lang::Fr, |c| Lang::from_code(&c))
}

/// Loads what the current screen shows.
fn load(store: &Store) {
    let s = (**store).clone();
    if s.session.is_none() {
        return;
    }
    spawn(store, async { ipc::status_get().await.map(Action::Status) });
    match &s.screen {
        Screen::Login => {}
        Screen::Jobs => {
            let (from, to) = s.list_range();
            spawn(store, async move {
                ipc::job_list(from.to_string(), to.to_string())
                    .await
                    .map(Action::Jobs)
            });
        }
        Screen::Job(id) => {
            let id = id.clone();
            spawn(store, async move {
                ipc::job_get(id).await.map(|d| Action::Detail(Box::new(d)))
            });
        }
        Screen::Board => {
            let (from, to) = s.board_range();
            let filter = s.board_filter.clone();
            spawn(store, async move {
                ipc::board_get(from.to_string(), to.to_string(), filter)
                    .await
                    .map(Action::Board)
            });
        }
        Screen::Conflicts => {
            spawn(store, async {
                ipc::conflict_list().await.map(Action::Conflicts)
            });
        }
    }
}

#[function_component(App)]
pub fn app() -> Html {
    let store = use_reducer(|| AppState::new(initial_lang(), today()));

    // Once: who is logged in, and the shell's events.
    {
        let store = store.clone();
        use_effect_with((), move |()| {
            spawn(&store, async {
                ipc::session_get().await.map(Action::Session)
            });
            // The link that opened the app, if any, for the login screen.
            let s = store.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(Some(url)) = ipc::login_link_take().await {
                    s.dispatch(Action::LoginLink(url));
                }
            });
            let s = store.clone();
            ipc::listen(event::LOGIN_LINK, move |p| {
                if let Some(url) = ipc::payload::<String>(p) {
                    s.dispatch(Action::LoginLink(url));
                }
            });
            // The date moves on at midnight for a dispatcher who keeps the app open.
            let s = store.clone();
            let tick = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
                s.dispatch(Action::Today(today()));
            });
            if let Some(w) = web_sys::window() {
                let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(
                    wasm_bindgen::JsCast::unchecked_ref(tick.as_ref()),
                    60_000,
                );
            }
            tick.forget();
            let s = store.clone();
            ipc::listen(event::DATA_CHANGED, move |_| s.dispatch(Action::Changed));
            let s = store;
            ipc::listen(event::SYNC_STATUS, move |p| {
                if let Some(st) = ipc::payload::<DeviceStatus>(p) {
                    s.dispatch(Action::Status(st));
                }
            });
        });
    }
    // Reload when the screen, the board's range or the data changes.
    {
        let store2 = store.clone();
        let deps = (
            store.screen.clone(),
            store.session.clone(),
            store.board_range(),
            store.board_filter.clone(),
            store.revision,
        );
        use_effect_with(deps, move |_| load(&store2));
    }

    let lang = store.lang;
    let toggle_lang = {
        let store = store.clone();
        Callback::from(move |_| {
            let l = store.lang.other();
            if let Some(s) = storage() {
                let _ = s.set_item("lang", l.code());
            }
            store.dispatch(Action::Lang(l));
        })
    };
    let body = if !store.session_known {
        html! { <main class="loading" aria-busy="true"></main> }
    } else {
        match &store.screen {
            Screen::Login => html! { <pages::login::Login /> },
            Screen::Jobs => html! { <pages::jobs::Jobs /> },
            Screen::Job(id) => html! { <pages::job::Job id={id.clone()} /> },
            Screen::Board => html! { <pages::board::BoardPage /> },
            Screen::Conflicts => html! { <pages::conflicts::Conflicts /> },
        }
    };
    html! {
        <ContextProvider<Store> context={store.clone()}>
            <div class="app" lang={lang.code()}>
                <header class="top">
                    <span class="brand">{ t(lang, Msg::AppName) }</span>
                    if let Some(session) = &store.session {
                        <Nav office={session.is_office()} />
                    }
                    <button class="link" onclick={toggle_lang}>{ t(lang, Msg::Language) }</button>
                </header>
                <ErrorBanner />
                if store.session.is_some() {
                    <StatusBar />
                }
                { body }
            </div>
        </ContextProvider<Store>>
    }
}

#[derive(Properties, PartialEq)]
struct NavProps {
    office: bool,
}

#[function_component(Nav)]
fn nav(p: &NavProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let go = |screen: Screen| {
        let store = store.clone();
        Callback::from(move |_| store.dispatch(Action::Go(screen.clone())))
    };
    let current = |s: &Screen| {
        if std::mem::discriminant(s) == std::mem::discriminant(&store.screen) {
            "page"
        } else {
            "false"
        }
    };
    let logout = {
        let store = store.clone();
        Callback::from(move |_| {
            spawn(&store, async {
                ipc::session_logout().await.map(|()| Action::Session(None))
            });
        })
    };
    let conflicts = store.status.conflicts;
    html! {
        <nav class="nav">
            if p.office {
                <button id="nav-board" aria-current={current(&Screen::Board)} onclick={go(Screen::Board)}>{ t(lang, Msg::Board) }</button>
                <button id="nav-conflicts" aria-current={current(&Screen::Conflicts)} onclick={go(Screen::Conflicts)}>
                    { t(lang, Msg::Conflicts) }
                    if conflicts > 0 { <span class="badge">{ conflicts }</span> }
                </button>
            } else {
                <button id="nav-jobs" aria-current={current(&Screen::Jobs)} onclick={go(Screen::Jobs)}>{ t(lang, Msg::MyJobs) }</button>
            }
            <button id="logout" class="link" onclick={logout}>{ t(lang, Msg::LogOut) }</button>
        </nav>
    }
}

#[function_component(ErrorBanner)]
fn error_banner() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let Some(e) = &store.error else {
        return html! {};
    };
    let dismiss = {
        let store = store.clone();
        Callback::from(move |_| store.dispatch(Action::DismissError))
    };
    html! {
        <div class="error" role="alert" id="error">
            <strong>{ t(store.lang, Msg::Error) }{ " : " }</strong>{ &e.message }
            <button class="link" onclick={dismiss}>{ t(store.lang, Msg::Dismiss) }</button>
        </div>
    }
}

/// What is on the device, what waits, and how sync is going.
#[function_component(StatusBar)]
fn status_bar() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let st = &store.status;
    let sync = {
        let store = store.clone();
        Callback::from(move |_| {
            spawn(&store, async { ipc::sync_now().await.map(Action::Status) });
        })
    };
    let now = js_sys::Date::now() as i64;
    let last = st.last_sync_ms.map_or_else(
        || t(lang, Msg::Never).to_owned(),
        |ms| crate::i18n::ago(lang, now, ms),
    );
    let (window, detail) = match (&st.first_job_date, &st.last_job_date) {
        (Some(a), Some(b)) => (
            crate::i18n::coverage(lang, a, b),
            format!("{} : {} · {a} → {b}", t(lang, Msg::OnDevice), st.jobs),
        ),
        _ => (String::new(), String::new()),
    };
    html! {
        <div class="status" id="status" role="status" aria-live="polite">
            <span class={if st.online { "dot on" } else { "dot off" }}></span>
            if st.online {
                <span id="online">{ t(lang, Msg::Online) }</span>
            } else {
                <span id="online" class="calm">{ crate::i18n::offline_line(lang, st.pending_changes) }</span>
            }
            <span id="coverage" title={detail}>{ window }</span>
            <span id="pending" class={if st.pending_changes > 0 { "warn" } else { "" }}>
                { st.pending_changes }{ " " }{ t(lang, Msg::Pending) }
            </span>
            if st.photos_waiting > 0 {
                <span class="warn">{ st.photos_waiting }{ " " }{ t(lang, Msg::PhotosWaiting) }</span>
            }
            if st.rejections > 0 {
                <span class="bad">{ st.rejections }{ " " }{ t(lang, Msg::Rejected) }</span>
            }
            <span>{ t(lang, Msg::LastSync) }{ ": " }<span id="last-sync">{ last }</span></span>
            if let Some(e) = &st.last_error {
                <span class="bad" id="sync-error" title={e.clone()}>{ e }</span>
            }
            <button id="sync-now" onclick={sync} disabled={st.syncing}>
                { t(lang, if st.syncing { Msg::Syncing } else { Msg::SyncNow }) }
            </button>
        </div>
    }
}
