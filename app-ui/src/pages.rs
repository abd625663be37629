//! One module per screen.

pub mod board;
pub mod conflicts;
pub mod job;
pub mod jobs;
pub mod login;
pub mod network;

use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

/// The value of the input an event came from.
pub fn input_value(e: &Event) -> String {
    let target = e.target();
    if let Some(i) = target
        .clone()
        .and_then(|t| wasm_bindgen::JsCast::dyn_into::<HtmlInputElement>(t).ok())
    {
        return i.value();
    }
    if let Some(i) = target
        .clone()
        .and_then(|t| wasm_bindgen::JsCast::dyn_into::<HtmlTextAreaElement>(t).ok())
    {
        return i.value();
    }
    target
        .and_then(|t| wasm_bindgen::JsCast::dyn_into::<HtmlSelectElement>(t).ok())
        .map(|s| s.value())
        .unwrap_or_default()
}

/// A text state bound to an input: the value and its `oninput` callback.
#[hook]
pub fn use_text(initial: &str) -> (UseStateHandle<String>, Callback<InputEvent>) {
    let v = use_state(|| initial.to_owned());
    let set = {
        let v = v.clone();
        Callback::from(move |e: InputEvent| v.set(input_value(&e)))
    };
    (v, set)
}
