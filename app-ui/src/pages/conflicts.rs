//! The conflict inbox: both values, who wrote each, and the choice to keep one.

use shared::ids::Author;
use shared::ipc::{ConflictView, ResolveArgs};
use shared::record::Scalar;
use yew::prelude::*;

use crate::app::{Store, spawn};
use crate::i18n::{self, Lang, Msg, t};
use crate::ipc;
use crate::state::{Action, Screen};

/// A value as the inbox shows it: text without quotes, a status or priority in words, a
/// decision's meaning, a referenced document by what the device knows of it (`label`).
pub fn display_value(lang: Lang, field: &str, v: &Scalar, label: Option<&str>) -> String {
    let s = match v {
        Scalar::Str(s) => s.clone(),
        other => other.to_string(),
    };
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
        "deleted" => match (lang, v) {
            (Lang::Fr, Scalar::Bool(true)) => {
                "Archiver (reste supprimé, le travail est gardé)".into()
            }
            (Lang::Fr, Scalar::Bool(false)) => "Restaurer".into(),
            (Lang::En, Scalar::Bool(true)) => "Archive (stays deleted, the work is kept)".into(),
            (Lang::En, Scalar::Bool(false)) => "Restore".into(),
            _ => s,
        },
        "duplicate_of" => {
            let twin = label.map_or(s, str::to_owned);
            match (lang, v) {
                (Lang::Fr, Scalar::Null) => "Un autre appareil (pas un doublon)".into(),
                (Lang::En, Scalar::Null) => "Another unit (not a duplicate)".into(),
                (Lang::Fr, _) => format!("Le même appareil que {twin}"),
                (Lang::En, _) => format!("The same unit as {twin}"),
            }
        }
        _ => label.map_or(s, str::to_owned),
    }
}

/// An author in words, with the end of its device id (ids are time-ordered: their start is the
/// same for devices set up the same day).
pub fn display_author(lang: Lang, a: Option<&Author>) -> String {
    let Some(a) = a else {
        return "?".into();
    };
    if a.is_erpnext() {
        return i18n::author(lang, a).to_owned();
    }
    let device = a.device.to_string();
    let tail = device.len().saturating_sub(6);
    format!(
        "{} ({})",
        i18n::author(lang, a),
        device.get(tail..).unwrap_or(&device)
    )
}

fn entry(store: &Store, c: &ConflictView) -> Html {
    let lang = store.lang;
    let open = {
        let (store, id) = (store.clone(), c.doc.clone());
        Callback::from(move |_| store.dispatch(Action::Go(Screen::Job(id.clone()))))
    };
    let resolve = |value: &Scalar| {
        let store = store.clone();
        let args = ResolveArgs {
            doc: c.doc.clone(),
            field: c.field.clone(),
            value: value.clone(),
        };
        Callback::from(move |_| {
            let args = args.clone();
            spawn(&store, async move {
                ipc::conflict_resolve(args).await.map(Action::Conflicts)
            });
        })
    };
    let label_of = |v: &Scalar| {
        c.values
            .iter()
            .find(|x| &x.value == v)
            .and_then(|x| x.label.clone())
    };
    let shown = display_value(lang, &c.field, &c.shown, label_of(&c.shown).as_deref());
    html! {
        <li class={classes!("conflict", c.settled.then_some("overridden"))} key={format!("{}-{}", c.doc, c.field)} data-doc={c.doc.clone()} data-field={c.field.clone()}>
            <h2><button class="link" onclick={open}>{ &c.label }</button>{ " · " }<span class="field" title={c.field.clone()}>{ i18n::field_label(lang, &c.field) }</span></h2>
            if c.settled {
                <p>
                    <strong class="shown">{ shown }</strong>{ " " }{ t(lang, Msg::Kept) }
                    <button class="ack" onclick={resolve(&c.shown)}>{ t(lang, Msg::Acknowledge) }</button>
                </p>
                <ul class="values">
                    { for c.values.iter().filter(|v| v.value != c.shown).map(|v| html! {
                        <li>
                            <s class="value">{ display_value(lang, &c.field, &v.value, v.label.as_deref()) }</s>
                            { " " }{ t(lang, Msg::WrittenBy) }{ " " }<span class="author">{ display_author(lang, v.author.as_ref()) }</span>
                        </li>
                    }) }
                </ul>
            } else {
                <p>{ t(lang, Msg::Shown) }{ ": " }<strong class="shown">{ shown }</strong></p>
                <ul class="values">
                    { for c.values.iter().map(|v| html! {
                        <li>
                            <strong class="value">{ display_value(lang, &c.field, &v.value, v.label.as_deref()) }</strong>
                            { " " }{ t(lang, Msg::WrittenBy) }{ " " }<span class="author">{ display_author(lang, v.author.as_ref()) }</span>
                            <button onclick={resolve(&v.value)}>{ t(lang, Msg::KeepValue) }</button>
                        </li>
                    }) }
                </ul>
            }
        </li>
    }
}

#[function_component(Conflicts)]
pub fn conflicts() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let (settled, open): (Vec<&ConflictView>, Vec<&ConflictView>) =
        store.conflicts.iter().partition(|c| c.settled);
    html! {
        <main class="conflicts" id="conflicts">
            <h1>{ t(lang, Msg::Conflicts) }</h1>
            if open.is_empty() {
                <p class="empty">{ t(lang, Msg::NoConflicts) }</p>
            }
            <ul id="open-conflicts">
                { for open.iter().map(|c| entry(&store, c)) }
            </ul>
            if !settled.is_empty() {
                <h1>{ t(lang, Msg::Overridden) }</h1>
                <p class="help">{ t(lang, Msg::OverriddenHelp) }</p>
                <ul id="overridden">
                    { for settled.iter().map(|c| entry(&store, c)) }
                </ul>
            }
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ids::{DeviceId, DocId, Role};

    #[test]
    fn values_and_authors_read_as_words() {
        let st = |v: &str| Scalar::str(v);
        assert_eq!(
            display_value(Lang::Fr, "status", &st("completed"), None),
            "Terminé"
        );
        assert_eq!(
            display_value(Lang::En, "status", &st("cancelled"), None),
            "Cancelled"
        );
        assert_eq!(
            display_value(Lang::Fr, "status", &st("weird"), None),
            "weird"
        );
        assert_eq!(
            display_value(Lang::Fr, "title", &st("Réparer « fibre »"), None),
            "Réparer « fibre »"
        );
        // Typed values keep their kind: a quantity of 1.5 and of 2 read as numbers.
        assert_eq!(
            display_value(Lang::Fr, "materials[a].quantity", &Scalar::F64(1.5), None),
            "1.5"
        );
        assert_eq!(
            display_value(Lang::Fr, "duration", &Scalar::Int(42), None),
            "42"
        );
        assert_eq!(display_value(Lang::Fr, "title", &Scalar::Null, None), "∅");
        assert_eq!(
            display_value(Lang::Fr, "deleted", &Scalar::Bool(false), None),
            "Restaurer"
        );
        assert_eq!(
            display_value(
                Lang::En,
                "duplicate_of",
                &st("0190"),
                Some("ZTEG1234 · 12 rue X")
            ),
            "The same unit as ZTEG1234 · 12 rue X"
        );
        let who = |role, n| Author::new(role, DeviceId(DocId::from_u128(n)));
        let tail = |n: u128| {
            let d = DeviceId(DocId::from_u128(n)).to_string();
            d[d.len() - 6..].to_owned()
        };
        assert_eq!(
            display_author(Lang::Fr, Some(&who(Role::Dispatcher, 0xa0b01))),
            format!("Répartiteur ({})", tail(0xa0b01))
        );
        assert_eq!(
            display_author(Lang::En, Some(&who(Role::Technician, 0xa0b02))),
            format!("Technician ({})", tail(0xa0b02))
        );
        assert_eq!(
            display_author(Lang::En, Some(&Author::ERPNEXT)),
            "ERPNext (office)"
        );
        assert_eq!(display_author(Lang::En, None), "?");
    }
}
