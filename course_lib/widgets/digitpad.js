// DigitPad front end (anywidget ES module).
//
// The browser only draws: pointer events (mouse, pen, finger) paint round
// strokes on a transparent canvas. The canvas's alpha channel (the ink) is sent
// to the kernel as one binary buffer: throttled while a stroke is drawn, and
// always when it ends. The kernel preprocesses it, runs the model and sets the
// synced traits (probabilities, prediction, message, preview, result_seq),
// which this module renders as a bar chart, a big predicted digit and the 28x28
// image the model saw.

function bytesOf(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof DataView) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (value.buffer instanceof ArrayBuffer) {
    return new Uint8Array(value.buffer, value.byteOffset || 0, value.byteLength);
  }
  return new Uint8Array(0);
}

function el(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

function render({ model, el: root }) {
  const size = model.get("size");
  root.classList.add("digitpad");

  const board = el("div", "digitpad-board", root);
  const canvas = el("canvas", "digitpad-canvas", board);
  canvas.width = size;
  canvas.height = size;
  canvas.style.width = `${size}px`;
  canvas.style.height = `${size}px`;
  canvas.setAttribute("aria-label", "Draw a digit here");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });

  const side = el("div", "digitpad-side", root);
  const predictionBox = el("div", "digitpad-predictionbox", side);
  const predictionCaption = el("div", "digitpad-caption", predictionBox);
  predictionCaption.textContent = "prediction";
  const prediction = el("div", "digitpad-prediction", predictionBox);
  const message = el("div", "digitpad-message", side);
  const bars = el("div", "digitpad-bars", side);
  const barFills = [];
  const barValues = [];
  for (let d = 0; d < 10; d++) {
    const row = el("div", "digitpad-row", bars);
    row.dataset.digit = String(d);
    const label = el("span", "digitpad-digit", row);
    label.textContent = String(d);
    const track = el("span", "digitpad-track", row);
    barFills.push(el("span", "digitpad-fill", track));
    barValues.push(el("span", "digitpad-value", row));
  }
  const previewBox = el("div", "digitpad-previewbox", side);
  const previewCaption = el("div", "digitpad-caption", previewBox);
  previewCaption.textContent = "what the model sees (28\u00d728)";
  const preview = el("canvas", "digitpad-preview", previewBox);
  preview.width = 28;
  preview.height = 28;
  const previewCtx = preview.getContext("2d");

  // --- drawing -------------------------------------------------------------
  let drawing = false;
  let pointerId = null;
  let last = null;
  let seq = 0;
  let answered = 0; // highest image number the kernel has answered
  let lastSent = 0;
  let pendingTimer = null;
  const sentAt = new Map();

  function position(event) {
    const rect = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * canvas.width) / rect.width,
      y: ((event.clientY - rect.top) * canvas.height) / rect.height,
    };
  }

  function strokeTo(p) {
    ctx.lineWidth = model.get("stroke_width");
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    if (!last) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
    }
    last = p;
  }

  function send(final) {
    if (pendingTimer !== null) {
      clearTimeout(pendingTimer);
      pendingTimer = null;
    }
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const alpha = new Uint8Array(canvas.width * canvas.height);
    for (let i = 0, j = 3; i < alpha.length; i++, j += 4) alpha[i] = data[j];
    seq += 1;
    lastSent = performance.now();
    if (final) sentAt.set(seq, lastSent);
    root.dataset.seqSent = String(seq);
    model.send(
      { type: "image", seq, final, width: canvas.width, height: canvas.height },
      undefined,
      [alpha.buffer],
    );
  }

  function maybeSend() {
    // Back-pressure: while the kernel works on an image, do not queue more
    // (the end of the stroke is always sent, so the last word is never lost).
    if (answered < seq) return;
    // Throttle: at most one image per `throttle_ms` while the pen moves.
    const wait = model.get("throttle_ms") - (performance.now() - lastSent);
    if (wait <= 0) {
      send(false);
    } else if (pendingTimer === null) {
      pendingTimer = setTimeout(() => {
        pendingTimer = null;
        if (drawing && answered >= seq) send(false);
      }, wait);
    }
  }

  function onDown(event) {
    if (event.button !== undefined && event.button > 0) return;
    event.preventDefault();
    event.stopPropagation();
    drawing = true;
    pointerId = event.pointerId;
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch (_) {
      // capture is best effort (synthetic events may not allow it)
    }
    last = null;
    strokeTo(position(event));
    maybeSend();
  }

  function onMove(event) {
    if (!drawing || event.pointerId !== pointerId) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) strokeTo(position(e));
    maybeSend();
  }

  function onUp(event) {
    if (!drawing || event.pointerId !== pointerId) return;
    event.preventDefault();
    drawing = false;
    pointerId = null;
    last = null;
    send(true);
  }

  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("pointercancel", onUp);
  // Keep JupyterLab from treating a drag on the canvas as a cell or text drag.
  const stop = (event) => event.stopPropagation();
  canvas.addEventListener("mousedown", stop);
  canvas.addEventListener("touchstart", (e) => e.preventDefault(), { passive: false });

  // --- kernel -> browser ----------------------------------------------------
  function onCustom(msg) {
    if (msg && msg.type === "clear") {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      drawing = false;
      last = null;
    }
  }
  model.on("msg:custom", onCustom);

  function renderResult() {
    const probs = model.get("probabilities") || [];
    const predicted = model.get("prediction");
    for (let d = 0; d < 10; d++) {
      const p = probs.length === 10 ? probs[d] : 0;
      barFills[d].style.width = `${(100 * p).toFixed(1)}%`;
      barValues[d].textContent = probs.length === 10 ? `${(100 * p).toFixed(1)}%` : "";
      barFills[d].parentElement.parentElement.classList.toggle("digitpad-top", d === predicted);
    }
    prediction.textContent = predicted === null || predicted === undefined ? "\u2013" : String(predicted);
    root.dataset.prediction = predicted === null || predicted === undefined ? "" : String(predicted);
    message.textContent = model.get("message") || "";

    const pixels = bytesOf(model.get("preview"));
    const image = previewCtx.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) {
      const v = pixels.length === 28 * 28 ? pixels[i] : 0;
      image.data[4 * i] = v;
      image.data[4 * i + 1] = v;
      image.data[4 * i + 2] = v;
      image.data[4 * i + 3] = 255;
    }
    previewCtx.putImageData(image, 0, 0);

    const shown = model.get("answered_seq");
    answered = Math.max(answered, shown);
    root.dataset.seqShown = String(shown);
    root.dataset.resultSeq = String(model.get("result_seq"));
    if (sentAt.has(shown)) {
      const latency = performance.now() - sentAt.get(shown);
      root.dataset.latencyMs = latency.toFixed(1);
      sentAt.clear();
    }
  }

  function renderPreviewVisibility() {
    previewBox.style.display = model.get("show_preview") ? "" : "none";
  }

  function renderSize() {
    canvas.style.cursor = "crosshair";
  }

  model.on("change:result_seq", renderResult);
  model.on("change:message", renderResult);
  model.on("change:show_preview", renderPreviewVisibility);
  renderResult();
  renderPreviewVisibility();
  renderSize();
  root.dataset.ready = "1";

  return () => {
    if (pendingTimer !== null) clearTimeout(pendingTimer);
    model.off("msg:custom", onCustom);
    model.off("change:result_seq", renderResult);
    model.off("change:message", renderResult);
    model.off("change:show_preview", renderPreviewVisibility);
  };
}

export default { render };
