//! A job: customer, place, network, equipment, and everything done on site.

use shared::ipc::{
    CheckInArgs, EquipmentMoveArgs, EquipmentView, JobDetail, LineView, MaterialArgs, PhotoArgs,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlInputElement};
use yew::prelude::*;

use super::use_text;
use crate::app::{Store, spawn};
use crate::i18n::{self, Msg, t};
use crate::ipc;
use crate::state::{Action, Screen};

#[derive(Properties, PartialEq)]
pub struct JobProps {
    pub id: String,
}

#[function_component(Job)]
pub fn job(p: &JobProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let back = {
        let store = store.clone();
        let office = store.session.as_ref().is_some_and(|s| s.is_office());
        Callback::from(move |_| {
            store.dispatch(Action::Go(if office {
                Screen::Board
            } else {
                Screen::Jobs
            }));
        })
    };
    let Some(d) = store.detail.clone().filter(|d| d.summary.id == p.id) else {
        return html! {
            <main class="job" aria-busy="true">
                <button class="link" onclick={back}>{ "← " }{ t(lang, Msg::Back) }</button>
            </main>
        };
    };
    let s = &d.summary;
    let map = d.gps.as_ref().map(|(lat, lon)| {
        format!("https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}")
    });
    // Directions from where the technician is, to the position, else to the address.
    let directions = match &d.gps {
        Some((lat, lon)) => format!("https://www.openstreetmap.org/directions?to={lat}%2C{lon}"),
        None => format!(
            "https://www.openstreetmap.org/search?query={}",
            String::from(js_sys::encode_uri_component(&s.address))
        ),
    };
    html! {
        <main class="job" id="job-detail" data-job={s.id.clone()}>
            <button class="link" id="back" onclick={back}>{ "← " }{ t(lang, Msg::Back) }</button>
            <h1 id="job-title">{ &s.title }</h1>
            <p class="meta">
                <span class={classes!("pill", format!("st-{}", s.status))} id="job-status">{ i18n::status(lang, &s.status) }</span>
                { " " }{ &s.date }{ " " }{ s.start.clone().unwrap_or_default() }
                { " · " }{ s.duration_min }{ " " }{ t(lang, Msg::Minutes) }
                { " · " }{ i18n::priority(lang, &s.priority) }
                if let Some(n) = &d.technician_name { { " · " }{ n } }
            </p>
            <StatusButtons detail={d.clone()} />
            if !d.description.is_empty() {
                <p class="description">{ &d.description }</p>
            }
            if !d.overridden.is_empty() {
                // A value of someone's replaced by a field's rule (the office corrected a
                // quantity…): said plainly, nothing to decide.
                <section class="card notice" id="job-overridden">
                    <h2>{ t(lang, Msg::Overridden) }</h2>
                    <ul>{ for d.overridden.iter().map(|c| html! {
                        <li key={c.field.clone()}>
                            { i18n::field_label(lang, &c.field) }{ " : " }
                            <strong>{ super::conflicts::display_value(lang, &c.field, &c.shown, None) }</strong>
                            { " " }{ t(lang, Msg::Kept) }
                            { for c.values.iter().filter(|v| v.value != c.shown).map(|v| html! {
                                <>{ " · " }<s>{ super::conflicts::display_value(lang, &c.field, &v.value, None) }</s>
                                { " " }{ t(lang, Msg::WrittenBy) }{ " " }{ super::conflicts::display_author(lang, v.author.as_ref()) }</>
                            }) }
                        </li>
                    }) }</ul>
                </section>
            }
            <section class="card">
                <h2>{ t(lang, Msg::Customer) }</h2>
                <p><strong>{ &s.customer }</strong></p>
                // Big enough for a gloved thumb: call the customer, get directions.
                <div class="big-actions">
                    if let Some(ph) = &d.customer_phone {
                        <a class="button big" id="call" href={format!("tel:{ph}")}>{ t(lang, Msg::Call) }</a>
                    }
                    <a class="button big" id="directions" href={directions} target="_blank" rel="noreferrer">{ t(lang, Msg::Directions) }</a>
                </div>
                if let Some(ph) = &d.customer_phone { <p class="help">{ ph }</p> }
                if let Some(m) = &d.customer_email { <p><a href={format!("mailto:{m}")}>{ m }</a></p> }
                <h2>{ t(lang, Msg::Location) }</h2>
                <p>{ &s.address }</p>
                if let (Some((lat, lon)), Some(url)) = (&d.gps, &map) {
                    <p>{ lat }{ ", " }{ lon }{ " " }<a href={url.clone()} target="_blank" rel="noreferrer">{ t(lang, Msg::Map) }</a></p>
                }
                <p class="net">
                    if let Some(port) = &d.olt_port { { "OLT " }{ port } }
                    if let Some(v) = d.vlan { { " · VLAN " }{ v } }
                </p>
                if !d.network_notes.is_empty() { <p class="help">{ &d.network_notes }</p> }
                if !d.contacts.is_empty() {
                    <h2>{ t(lang, Msg::Contacts) }</h2>
                    <ul>{ for d.contacts.iter().map(|c| html! {
                        <li>{ &c.name }
                            if let Some(r) = &c.role { { " (" }{ r }{ ")" } }
                            if let Some(ph) = &c.phone { { " " }<a href={format!("tel:{ph}")}>{ ph }</a> }
                        </li>
                    }) }</ul>
                }
            </section>
            <section class="card">
                <h2>{ t(lang, Msg::Equipment) }</h2>
                <ul id="equipment-here">{ for d.equipment.iter().map(|e| html! {
                    <li>{ &e.kind }{ " · " }<code>{ &e.serial }</code>
                        if let Some(m) = &e.mac { { " · " }<code>{ m }</code> }
                        { " · " }{ &e.status }</li>
                }) }</ul>
                <EquipmentPanel detail={d.clone()} />
            </section>
            <super::network::Network equipment={d.equipment.clone()} />
            if !d.subscriptions.is_empty() {
                <section class="card">
                    <h2>{ t(lang, Msg::Subscriptions) }</h2>
                    <ul>{ for d.subscriptions.iter().map(|s| html! {
                        <li>{ &s.plan }{ " · " }{ &s.status }{ " · " }{ &s.monthly_price }</li>
                    }) }</ul>
                </section>
            }
            <CheckIn detail={d.clone()} />
            <Notes detail={d.clone()} />
            <Checklist detail={d.clone()} />
            <Materials detail={d.clone()} />
            <Photos detail={d.clone()} />
            <SignaturePad detail={d.clone()} />
            if !d.history.is_empty() {
                <section class="card">
                    <h2>{ t(lang, Msg::History) }</h2>
                    <ul>{ for d.history.iter().map(|h| html! {
                        <li>{ &h.date }{ " · " }{ &h.title }{ " · " }{ i18n::status(lang, &h.status) }</li>
                    }) }</ul>
                </section>
            }
        </main>
    }
}

#[derive(Properties, PartialEq)]
struct DetailProps {
    detail: JobDetail,
}

/// Runs an edit that answers with the fresh detail.
fn edit<F>(store: &Store, fut: F)
where
    F: std::future::Future<Output = Result<JobDetail, shared::ipc::CommandError>> + 'static,
{
    spawn(store, async move {
        fut.await.map(|d| Action::Detail(Box::new(d)))
    });
    // The list, the board and the status counters change too.
    let s = store.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Ok(st) = ipc::status_get().await {
            s.dispatch(Action::Status(st));
        }
    });
}

/// The statuses that end the job: a wrong tap there is costly, so they ask first.
fn ends_the_job(status: &str) -> bool {
    matches!(status, "completed" | "could_not_complete")
}

/// What is still open on a job about to be ended: checklist lines not ticked, and no signature.
fn open_items(
    checklist: &[shared::ipc::LineView],
    signature: Option<&String>,
) -> (Vec<String>, bool) {
    let unticked = checklist
        .iter()
        .filter(|l| !l.done)
        .map(|l| l.text.clone())
        .collect();
    (unticked, signature.is_none())
}

#[function_component(StatusButtons)]
fn status_buttons(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    // A status that ends the job, waiting for its confirmation.
    let asking = use_state(|| None::<String>);
    let set = |st: String| {
        let (store, id, asking) = (store.clone(), p.detail.summary.id.clone(), asking.clone());
        Callback::from(move |_| {
            asking.set(None);
            edit(&store, ipc::job_set_status(id.clone(), st.clone()));
        })
    };
    let confirm = (*asking).clone().map(|st| {
        let (unticked, unsigned) = open_items(&p.detail.checklist, p.detail.signature.as_ref());
        let cancel = {
            let asking = asking.clone();
            Callback::from(move |_| asking.set(None))
        };
        html! {
            <div class="panel" id="confirm-status" role="dialog" aria-label={t(lang, Msg::ConfirmStatus)}>
                <h3>{ t(lang, Msg::ConfirmStatus) }{ " : " }{ i18n::status(lang, &st) }</h3>
                if !unticked.is_empty() {
                    <p class="warn">{ t(lang, Msg::StillOpen) }</p>
                    <ul id="confirm-unticked">{ for unticked.iter().map(|l| html! { <li>{ l }</li> }) }</ul>
                }
                if unsigned {
                    <p class="warn" id="confirm-unsigned">{ t(lang, Msg::NoSignature) }</p>
                }
                <div class="actions">
                    <button id="confirm-yes" class="primary" onclick={set(st.clone())}>{ t(lang, Msg::Confirm) }</button>
                    <button id="confirm-no" onclick={cancel}>{ t(lang, Msg::Cancel) }</button>
                </div>
            </div>
        }
    });
    html! {
        <>
        <div class="actions status-actions" role="group" aria-label={t(lang, Msg::ChangeStatus)}>
            { for p.detail.next_statuses.iter().map(|st| {
                let onclick = if ends_the_job(st) {
                    let (asking, st) = (asking.clone(), st.clone());
                    Callback::from(move |_| asking.set(Some(st.clone())))
                } else {
                    set(st.clone())
                };
                html! { <button class={classes!("to", format!("st-{st}"))} id={format!("to-{st}")} {onclick}>{ i18n::status(lang, st) }</button> }
            }) }
        </div>
        { confirm.unwrap_or_default() }
        </>
    }
}

#[function_component(Notes)]
fn notes(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let (text, on_text) = use_text("");
    let add = {
        let (store, text, id) = (store, text.clone(), p.detail.summary.id.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let body = (*text).clone();
            text.set(String::new());
            edit(&store, ipc::job_add_note(id.clone(), body));
        })
    };
    html! {
        <section class="card">
            <h2>{ t(lang, Msg::Notes) }</h2>
            <form onsubmit={add} class="row">
                <textarea id="note-text" rows="2" value={(*text).clone()} oninput={on_text} aria-label={t(lang, Msg::Notes)}></textarea>
                <button id="add-note" type="submit">{ t(lang, Msg::AddNote) }</button>
            </form>
            <ul id="notes">{ for p.detail.notes.iter().map(|n| html! { <li key={n.key.clone()}>{ &n.text }</li> }) }</ul>
        </section>
    }
}

#[function_component(Checklist)]
fn checklist(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    if p.detail.checklist.is_empty() {
        return html! {};
    }
    let (done, total) = progress(&p.detail.checklist);
    html! {
        <section class="card">
            <h2>{ t(store.lang, Msg::Checklist) }{ " " }<span id="checklist-progress" class="progress">{ format!("{done}/{total}") }</span></h2>
            <ul class="checklist">{ for p.detail.checklist.iter().map(|c: &LineView| {
                let onchange = {
                    let (store, id, key) = (store.clone(), p.detail.summary.id.clone(), c.key.clone());
                    Callback::from(move |_| edit(&store, ipc::job_toggle_check(id.clone(), key.clone())))
                };
                html! { <li key={c.key.clone()}><label><input type="checkbox" checked={c.done} {onchange} />{ " " }{ &c.text }</label></li> }
            }) }</ul>
        </section>
    }
}

/// How many checklist lines are ticked, out of how many.
fn progress(lines: &[LineView]) -> (usize, usize) {
    (lines.iter().filter(|l| l.done).count(), lines.len())
}

#[function_component(Materials)]
fn materials(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let (code, on_code) = use_text("");
    let (qty, on_qty) = use_text("1");
    let (unit, on_unit) = use_text("u");
    let add = {
        let (store, code, qty, unit, id) = (
            store,
            code.clone(),
            qty.clone(),
            unit.clone(),
            p.detail.summary.id.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Ok(quantity) = qty.trim().parse::<i64>() else {
                store.dispatch(Action::Error(shared::ipc::CommandError::new(
                    shared::ipc::ErrorKind::Invalid,
                    format!("{} ?", t(store.lang, Msg::Quantity)),
                )));
                return;
            };
            let args = MaterialArgs {
                id: id.clone(),
                item_code: (*code).clone(),
                quantity,
                unit: (*unit).clone(),
            };
            code.set(String::new());
            edit(&store, ipc::job_add_material(args));
        })
    };
    html! {
        <section class="card">
            <h2>{ t(lang, Msg::Materials) }</h2>
            <form onsubmit={add} class="row">
                <input id="material-code" placeholder="ITEM-CODE" value={(*code).clone()} oninput={on_code} aria-label="item code" />
                <input id="material-qty" type="number" min="1" class="short" value={(*qty).clone()} oninput={on_qty} aria-label={t(lang, Msg::Quantity)} />
                <input id="material-unit" class="short" value={(*unit).clone()} oninput={on_unit} aria-label={t(lang, Msg::Unit)} />
                <button type="submit">{ t(lang, Msg::AddMaterial) }</button>
            </form>
            <ul>{ for p.detail.materials.iter().map(|m| html! {
                <li key={m.key.clone()}>{ &m.text }{ " · " }{ m.detail.clone().unwrap_or_default() }</li>
            }) }</ul>
        </section>
    }
}

/// Add, swap or return equipment: scan (mobile) or type a serial/MAC prefix, pick a result.
#[function_component(EquipmentPanel)]
fn equipment_panel(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let query = use_state(String::new);
    let replaces = use_state(|| None::<String>);
    let on_query = {
        let (store, query) = (store.clone(), query.clone());
        Callback::from(move |e: InputEvent| {
            let q = super::input_value(&e);
            query.set(q.clone());
            store.dispatch(Action::SearchTyped(q.clone()));
            spawn(&store, async move {
                ipc::equipment_search(q.clone())
                    .await
                    .map(|r| Action::Search(q, r))
            });
        })
    };
    let scan = {
        let (store, query) = (store.clone(), query.clone());
        Callback::from(move |_| {
            let (store2, query) = (store.clone(), query.clone());
            spawn(&store, async move {
                let code = ipc::scan().await?;
                query.set(code.clone());
                store2.dispatch(Action::SearchTyped(code.clone()));
                let r = ipc::equipment_search(code.clone()).await?;
                Ok(Action::Search(code, r))
            });
        })
    };
    let mobile = store.session.as_ref().is_some_and(|s| s.mobile);
    let act = |e: &EquipmentView, action: &'static str| {
        let (store, id, eq, replaces) = (
            store.clone(),
            p.detail.summary.id.clone(),
            e.id.clone(),
            replaces.clone(),
        );
        Callback::from(move |_| {
            let args = EquipmentMoveArgs {
                id: id.clone(),
                equipment: eq.clone(),
                action: action.to_owned(),
                replaces: if action == "swap" {
                    (*replaces).clone()
                } else {
                    None
                },
            };
            edit(&store, ipc::job_equipment(args));
            store.dispatch(Action::SearchClear);
        })
    };
    let here: Vec<&EquipmentView> = p.detail.equipment.iter().collect();
    let on_replaces = {
        let replaces = replaces.clone();
        Callback::from(move |e: Event| {
            let v = super::input_value(&e);
            replaces.set((!v.is_empty()).then_some(v));
        })
    };
    html! {
        <div class="equipment-panel">
            <div class="row">
                <input id="equipment-query" type="search" autocomplete="off" spellcheck="false"
                    placeholder={t(lang, Msg::ScanOrType)} aria-label={t(lang, Msg::ScanOrType)}
                    value={(*query).clone()} oninput={on_query} />
                if mobile { <button id="scan" onclick={scan}>{ "📷" }</button> }
            </div>
            if !here.is_empty() {
                <label>{ t(lang, Msg::Replaces) }{ " " }
                    <select id="replaces" onchange={on_replaces}>
                        <option value="">{ "—" }</option>
                        { for here.iter().map(|e| html! { <option value={e.id.clone()}>{ &e.serial }</option> }) }
                    </select>
                </label>
            }
            <ul id="equipment-results" class="results">{ for store.search.iter().map(|e| html! {
                <li key={e.id.clone()} data-serial={e.serial.clone()}>
                    <code>{ &e.serial }</code>{ " " }{ &e.kind }{ " · " }{ &e.status }
                    if let Some(l) = &e.location { <span class="help">{ " · " }{ l }</span> }
                    <button class="install" onclick={act(e, "install")}>{ t(lang, Msg::Install) }</button>
                    <button class="swap" onclick={act(e, "swap")} disabled={replaces.is_none()}>{ t(lang, Msg::Swap) }</button>
                    <button class="return" onclick={act(e, "return")}>{ t(lang, Msg::Return) }</button>
                </li>
            }) }</ul>
            <ul id="equipment-moves">{ for p.detail.equipment_moves.iter().map(|m| html! {
                <li key={m.key.clone()}>{ &m.text }{ " " }{ m.detail.clone().unwrap_or_default() }</li>
            }) }</ul>
        </div>
    }
}

#[function_component(CheckIn)]
fn check_in(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let (lat, on_lat) = use_text("");
    let (lon, on_lon) = use_text("");
    let go = {
        let (store, lat, lon, id) = (store, lat.clone(), lon.clone(), p.detail.summary.id.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let args = CheckInArgs {
                id: id.clone(),
                lat: lat.trim().replace(',', ".").parse().ok(),
                lon: lon.trim().replace(',', ".").parse().ok(),
            };
            edit(&store, ipc::job_check_in(args));
        })
    };
    html! {
        <section class="card">
            <h2>{ t(lang, Msg::CheckIn) }</h2>
            if let Some(c) = &p.detail.checked_in {
                <p id="checked-in">{ t(lang, Msg::CheckedIn) }{ " · " }{ c }</p>
            }
            if let Some(m) = p.detail.time_on_site_min {
                <p>{ t(lang, Msg::TimeOnSite) }{ ": " }{ m }{ " " }{ t(lang, Msg::Minutes) }</p>
            }
            // One tap records the arrival time (with the position where the device gives one);
            // typing a position is the rare exception, folded away.
            <form onsubmit={go}>
                <button id="check-in" class="big" type="submit">{ t(lang, Msg::CheckIn) }</button>
                <details>
                    <summary>{ t(lang, Msg::TypePosition) }</summary>
                    <div class="row">
                        <input class="short" inputmode="decimal" placeholder={t(lang, Msg::Latitude)} aria-label={t(lang, Msg::Latitude)} value={(*lat).clone()} oninput={on_lat} />
                        <input class="short" inputmode="decimal" placeholder={t(lang, Msg::Longitude)} aria-label={t(lang, Msg::Longitude)} value={(*lon).clone()} oninput={on_lon} />
                    </div>
                </details>
            </form>
        </section>
    }
}

/// Reads a picked file as base64 and hands it to `then`.
fn read_file(input: &HtmlInputElement, then: impl FnOnce(String) + 'static) {
    let Some(file) = input.files().and_then(|f| f.get(0)) else {
        return;
    };
    let Ok(reader) = web_sys::FileReader::new() else {
        return;
    };
    let r2 = reader.clone();
    let done = Closure::once(Box::new(move || {
        if let Some(url) = r2.result().ok().and_then(|v| v.as_string())
            && let Some((_, b64)) = url.split_once(',')
        {
            then(b64.to_owned());
        }
    }) as Box<dyn FnOnce()>);
    reader.set_onload(Some(done.as_ref().unchecked_ref()));
    done.forget();
    let _ = reader.read_as_data_url(&file);
}

#[function_component(Photos)]
fn photos(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let onchange = {
        let (store, id) = (store, p.detail.summary.id.clone());
        Callback::from(move |e: Event| {
            let Some(input) = e.target_dyn_into::<HtmlInputElement>() else {
                return;
            };
            let (store, id) = (store.clone(), id.clone());
            read_file(&input, move |base64| {
                edit(
                    &store,
                    ipc::job_add_photo(PhotoArgs {
                        id,
                        base64,
                        caption: None,
                    }),
                );
            });
            input.set_value("");
        })
    };
    html! {
        <section class="card">
            <h2>{ t(lang, Msg::Photos) }</h2>
            <label class="button">{ t(lang, Msg::AddPhoto) }
                <input id="photo" type="file" accept="image/*" capture="environment" class="hidden" {onchange} />
            </label>
            <ul id="photos">{ for p.detail.photos.iter().map(|ph| html! {
                <li key={ph.key.clone()}>{ &ph.text }{ " · " }
                    <span class={if ph.done { "ok" } else { "warn" }}>
                        { t(lang, if ph.done { Msg::Uploaded } else { Msg::WaitingUpload }) }
                    </span>
                </li>
            }) }</ul>
        </section>
    }
}

/// A pointer-drawn signature, saved as PNG with the signer's name.
#[function_component(SignaturePad)]
fn signature_pad(p: &DetailProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let canvas = use_node_ref();
    let drawing = use_mut_ref(|| false);
    let (signer, on_signer) = use_text("");
    let ctx = |c: &NodeRef| -> Option<(HtmlCanvasElement, CanvasRenderingContext2d)> {
        let el = c.cast::<HtmlCanvasElement>()?;
        let cx = el
            .get_context("2d")
            .ok()??
            .dyn_into::<CanvasRenderingContext2d>()
            .ok()?;
        Some((el, cx))
    };
    let point = |el: &HtmlCanvasElement, e: &PointerEvent| {
        let r = el.get_bounding_client_rect();
        let sx = f64::from(el.width()) / r.width().max(1.0);
        let sy = f64::from(el.height()) / r.height().max(1.0);
        (
            (f64::from(e.client_x()) - r.left()) * sx,
            (f64::from(e.client_y()) - r.top()) * sy,
        )
    };
    let down = {
        let (c, drawing) = (canvas.clone(), drawing.clone());
        Callback::from(move |e: PointerEvent| {
            if let Some((el, cx)) = ctx(&c) {
                *drawing.borrow_mut() = true;
                let (x, y) = point(&el, &e);
                cx.begin_path();
                cx.move_to(x, y);
            }
        })
    };
    let moved = {
        let (c, drawing) = (canvas.clone(), drawing.clone());
        Callback::from(move |e: PointerEvent| {
            if !*drawing.borrow() {
                return;
            }
            if let Some((el, cx)) = ctx(&c) {
                let (x, y) = point(&el, &e);
                cx.set_line_width(2.5);
                cx.line_to(x, y);
                cx.stroke();
            }
        })
    };
    let up = { Callback::from(move |_: PointerEvent| *drawing.borrow_mut() = false) };
    let clear = {
        let c = canvas.clone();
        Callback::from(move |_| {
            if let Some((el, cx)) = ctx(&c) {
                cx.clear_rect(0.0, 0.0, f64::from(el.width()), f64::from(el.height()));
            }
        })
    };
    let save = {
        let (store, c, signer, id) = (
            store,
            canvas.clone(),
            signer.clone(),
            p.detail.summary.id.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(el) = c.cast::<HtmlCanvasElement>() else {
                return;
            };
            let Some(b64) = el
                .to_data_url()
                .ok()
                .and_then(|u| u.split_once(',').map(|(_, b)| b.to_owned()))
            else {
                return;
            };
            edit(
                &store,
                ipc::job_sign(PhotoArgs {
                    id: id.clone(),
                    base64: b64,
                    caption: Some((*signer).clone()),
                }),
            );
        })
    };
    html! {
        <section class="card">
            <h2>{ t(lang, Msg::Signature) }</h2>
            if let Some(s) = &p.detail.signature {
                <p id="signed">{ "✓ " }{ s }</p>
            }
            <canvas ref={canvas} class="signature" width="600" height="200" aria-label={t(lang, Msg::Signature)}
                onpointerdown={down} onpointermove={moved} onpointerup={up.clone()} onpointerleave={up}></canvas>
            <form onsubmit={save} class="row">
                <input id="signer" placeholder={t(lang, Msg::Signer)} aria-label={t(lang, Msg::Signer)} value={(*signer).clone()} oninput={on_signer} />
                <button type="button" class="link" onclick={clear}>{ t(lang, Msg::Clear) }</button>
                <button type="submit">{ t(lang, Msg::Sign) }</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_job_lists_what_is_still_open() {
        assert!(ends_the_job("completed") && ends_the_job("could_not_complete"));
        assert!(!ends_the_job("en_route"));
        let line = |text: &str, done: bool| shared::ipc::LineView {
            key: text.into(),
            text: text.into(),
            detail: None,
            done,
        };
        let checklist = [line("Niveau optique", true), line("Test Wi-Fi", false)];
        assert_eq!(
            open_items(&checklist, None),
            (vec!["Test Wi-Fi".to_owned()], true)
        );
        let signed = "signature.png".to_owned();
        assert_eq!(open_items(&checklist[..1], Some(&signed)), (vec![], false));
        assert_eq!(progress(&checklist), (1, 2));
        assert_eq!(progress(&[]), (0, 0));
    }
}
