//! The conflict inbox: both values, who wrote each, and the choice to keep one.

use shared::ipc::ResolveArgs;
use yew::prelude::*;

use crate::app::{Store, spawn};
use crate::i18n::{Msg, t};
use crate::ipc;
use crate::state::{Action, Screen};

/// A value as the inbox shows it: strings without their quotes.
pub fn display_value(v: &str) -> String {
    serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_owned())
}

/// An author (`Dispatcher:…`, `Technician:…`, `Server:…`) in words, with a short device id.
pub fn display_author(a: Option<&str>) -> String {
    let Some(a) = a else {
        return "?".into();
    };
    match a.split_once(':') {
        Some((role, device)) => format!("{role} ({})", device.get(..8).unwrap_or(device)),
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
                            <h2><button class="link" onclick={open}>{ &c.label }</button>{ " · " }<code>{ &c.field }</code></h2>
                            <p>{ t(lang, Msg::Shown) }{ ": " }<strong class="shown">{ display_value(&c.shown) }</strong></p>
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
                                            <strong class="value">{ display_value(&v.value) }</strong>
                                            { " " }{ t(lang, Msg::WrittenBy) }{ " " }<span class="author">{ display_author(v.author.as_deref()) }</span>
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
        assert_eq!(display_value("\"completed\""), "completed");
        assert_eq!(display_value("\"Réparer « fibre »\""), "Réparer « fibre »");
        assert_eq!(display_value("42"), "42");
        assert_eq!(display_value("∅"), "∅");
        assert_eq!(
            display_author(Some("Dispatcher:0190f3a1-1111-7000-8000-000000000001")),
            "Dispatcher (0190f3a1)"
        );
        assert_eq!(display_author(None), "?");
    }
}
