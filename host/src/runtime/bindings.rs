//! Host-side bindings generated from `wit/transform.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform",
});
