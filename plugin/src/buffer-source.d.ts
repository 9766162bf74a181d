// structured-headers' types name the DOM's `BufferSource`, which a
// plugin's main thread (no DOM library) lacks: the same type, for it.
type BufferSource = ArrayBufferView | ArrayBuffer
