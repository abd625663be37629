//! The conflict inbox: both values, who wrote each, and the choice to keep one.

use shared::ipc::ResolveArgs;
use yew::prelude::*;

use crate::app::{Store, spawn};
use crate::i18n::{self, Lang, Msg, t};
use crate::ipc;
use crate::state::{Action, Screen};

/// A value as the inbox shows it: strings without their quotes, a status in words.
pub fn display_value(lang: Lang, field: &str, v: &str) -> String {
    let s = serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_owned());
    match field {
        "status" => match i18n::status(lang, &s) {
            "?" => s,
            word => word.to_owned(),
        },
        "priority" => match i18n::priority(lang, &s) {
            "?" => s,
            word => word.to_owned(),
        },
        // A deletion while field work arrived: restore it, or archive it with its work.
        "deleted" => match (lang, s.as_str()) {
            (Lang::Fr, "true") => "Archiver (reste supprimé, le travail est gardé)".into(),
            (Lang::Fr, "false") => "Restaurer".into(),
            (Lang::En, "true") => "Archive (stays deleted, the work is kept)".into(),
            (Lang::En, "false") => "Restore".into(),
            _ => s,
        },
        "duplicate_of" => match (lang, s.as_str()) {
            (Lang::Fr, "∅" | "null") => "Un autre appareil (pas un doublon)".into(),
            (Lang::En, "∅" | "null") => "Another unit (not a duplicate)".into(),
            (Lang::Fr, id) => format!("Le même appareil que {id}"),
            (Lang::En, id) => format!("The same unit as {id}"),
        },
        _ => s,
    }
}

/// An author (`Dispatcher:…`, `Technician:…`, `Server:…`) in words, with the end of its device
/// id (ids are time-ordered: their start is the same for devices set up the same day).
pub fn display_author(lang: Lang, a: Option<&str>) -> String {
    let Some(a) = a else {
        return "?".into();
    };
    match a.split_once(':') {
        Some((role, device)) => {
            let tail = device.len().saturating_sub(6);
            format!(
                "{} ({})",
                i18n::role(lang, role),
                device.get(tail..).unwrap_or(device)
            )
        }
        None => a.to_owned(),
    }
}

#[function_component(Conflicts)]
pub fn conflicts() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    html! {
        <main class="conflicts" id="conflicts">
            <h1>{ t(lang, Msg::Conflicts) }</h1>
            if store.conflicts.is_empty() {
                <p class="empty">{ t(lang, Msg::NoConflicts) }</p>
            }
            <ul>
                { for store.conflicts.iter().map(|c| {
                    let open = {
                        let (store, id) = (store.clone(), c.doc.clone());
                        Callback::from(move |_| store.dispatch(Action::Go(Screen::Job(id.clone()))))
                    };
                    html! {
                        <li class="conflict" key={format!("{}-{}", c.doc, c.field)} data-doc={c.doc.clone()} data-field={c.field.clone()}>
                            <h2><button class="link" onclick={open}>{ &c.label }</button>{ " · " }<span class="field" title={c.field.clone()}>{ i18n::field_label(lang, &c.field) }</span></h2>
                            <p>{ t(lang, Msg::Shown) }{ ": " }<strong class="shown">{ display_value(lang, &c.field, &c.shown) }</strong></p>
                            <ul class="values">
                                { for c.values.iter().map(|v| {
                                    let keep = {
                                        let store = store.clone();
                                        let args = ResolveArgs { doc: c.doc.clone(), field: c.field.clone(), value: v.value.clone() };
                                        Callback::from(move |_| {
                                            let args = args.clone();
                                            spawn(&store, async move { ipc::conflict_resolve(args).await.map(Action::Conflicts) });
                                        })
                                    };
                                    html! {
                                        <li>
                                            <strong class="value">{ display_value(lang, &c.field, &v.value) }</strong>
                                            { " " }{ t(lang, Msg::WrittenBy) }{ " " }<span class="author">{ display_author(lang, v.author.as_deref()) }</span>
                                            <button onclick={keep}>{ t(lang, Msg::KeepValue) }</button>
                                        </li>
                                    }
                                }) }
                            </ul>
                        </li>
                    }
                }) }
            </ul>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_authors_read_as_words() {
        assert_eq!(
            display_value(Lang::Fr, "status", "\"completed\""),
            "Terminé"
        );
        assert_eq!(
            display_value(Lang::En, "status", "\"cancelled\""),
            "Cancelled"
        );
        assert_eq!(display_value(Lang::Fr, "status", "\"weird\""), "weird");
        assert_eq!(
            display_value(Lang::Fr, "title", "\"Réparer « fibre »\""),
            "Réparer « fibre »"
        );
        assert_eq!(display_value(Lang::Fr, "duration", "42"), "42");
        assert_eq!(display_value(Lang::Fr, "title", "∅"), "∅");
        assert_eq!(
            display_author(
                Lang::Fr,
                Some("Dispatcher:0190f3a1-1111-7000-8000-0000000a0b01")
            ),
            "Répartiteur (0a0b01)"
        );
        assert_eq!(
            display_author(
                Lang::En,
                Some("Technician:0190f3a1-1111-7000-8000-0000000a0b02")
            ),
            "Technician (0a0b02)"
        );
        assert_eq!(display_author(Lang::En, None), "?");
    }
}
