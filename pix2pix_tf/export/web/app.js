// The page of `export.py --web`: the generator's .tflite file run by LiteRT.js in this browser.
// page.json (written by the export) names the model file, its size, channels, drawing and examples.
// The input canvas holds the model input at the model's size; its pixels are scaled to [-1, 1]
// as the Python side does (x / 127.5 - 1 in float32), the output back with round-half-to-even,
// so a file the Python LiteRT interpreter runs gives the same pixels here.
import {isWebGPUSupported, loadAndCompile, loadLiteRt, Tensor} from "./runtime/litert.js";

const $ = (id) => document.getElementById(id);
const input = $("input"), output = $("output"), status = $("status");
const inputContext = input.getContext("2d", {willReadFrequently: true});
const ACCELERATORS = {wasm: "CPU (WebAssembly, XNNPACK)", webgpu: "GPU (WebGPU)"};
const models = {};  // Compiled model per accelerator, compiled on first use.
let config, brushColour, runtimeLoaded;

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function model(accelerator) {
  runtimeLoaded ??= loadLiteRt("./runtime/");
  await runtimeLoaded;
  models[accelerator] ??= loadAndCompile("./" + config.model.file, {accelerator});
  return models[accelerator];
}

// ------------------------------------------------------------------ drawing

function clearInput() {
  inputContext.fillStyle = config.drawing.background;
  inputContext.fillRect(0, 0, input.width, input.height);
}

function setUpPalette() {
  const names = Object.fromEntries(config.drawing.names);
  for (const colour of config.drawing.colours) {
    const button = document.createElement("button");
    button.type = "button";
    button.style.background = colour;
    button.title = names[colour] ? `${names[colour]} ${colour}` : colour;
    button.dataset.colour = colour;
    button.addEventListener("click", () => selectColour(colour));
    $("palette").append(button);
  }
  if (!config.drawing.fixed) {
    const picker = Object.assign(document.createElement("input"), {type: "color", value: "#000000"});
    picker.addEventListener("input", () => selectColour(picker.value));
    $("palette").append(picker);
  }
  selectColour(config.drawing.colours[0]);
  $("legend").textContent = config.drawing.legend;
}

function selectColour(colour) {
  brushColour = colour;
  for (const button of $("palette").querySelectorAll("button")) {
    button.classList.toggle("selected", button.dataset.colour === colour);
  }
}

// Square stamps on whole pixels: no antialiasing, so a label map keeps exactly its class colours.
function stamp(from, to) {
  const radius = Number($("brush").value) * input.width / 256;
  const steps = Math.max(1, Math.ceil(Math.hypot(to.x - from.x, to.y - from.y)));
  inputContext.fillStyle = brushColour;
  for (let i = 0; i <= steps; i++) {
    const x = Math.round(from.x + (to.x - from.x) * i / steps), y = Math.round(from.y + (to.y - from.y) * i / steps);
    inputContext.fillRect(x - Math.floor(radius), y - Math.floor(radius), 2 * Math.floor(radius) + 1,
                          2 * Math.floor(radius) + 1);
  }
}

function setUpDrawing() {
  let last = null;
  const at = (event) => {
    const box = input.getBoundingClientRect();
    return {x: (event.clientX - box.left) * input.width / box.width, y: (event.clientY - box.top) * input.height / box.height};
  };
  input.addEventListener("pointerdown", (event) => {
    input.setPointerCapture(event.pointerId);
    last = at(event);
    stamp(last, last);
  });
  input.addEventListener("pointermove", (event) => {
    if (last) { const point = at(event); stamp(last, point); last = point; }
  });
  const end = () => { if (last) { last = null; translate(); } };
  input.addEventListener("pointerup", end);
  input.addEventListener("pointercancel", end);
}

// An image file or example as the model input: the exact pixels at the model's size, else
// stretched to it by the browser's scaler (not the bicubic resize of the Python side).
async function showImage(blob) {
  const bitmap = await createImageBitmap(blob, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  clearInput();
  inputContext.imageSmoothingQuality = "high";
  inputContext.drawImage(bitmap, 0, 0, input.width, input.height);
  bitmap.close();
}

// ------------------------------------------------------------------ translation

function modelInput() {
  const pixels = inputContext.getImageData(0, 0, input.width, input.height).data;
  const size = input.width * input.height, channels = config.input_nc;
  const values = new Float32Array(size * channels);
  for (let p = 0; p < size; p++) {
    const [r, g, b] = [pixels[4 * p], pixels[4 * p + 1], pixels[4 * p + 2]];
    if (channels === 1) {  // tf.image.rgb_to_grayscale's weights, truncated back to uint8 as it does.
      values[p] = Math.fround(Math.floor((0.2989 * r + 0.587 * g + 0.114 * b) / 255 * 255.5) / 127.5) - 1;
    } else {
      for (let c = 0; c < 3; c++) values[3 * p + c] = Math.fround([r, g, b][c] / 127.5) - 1;
    }
  }
  return values;
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function showOutput(values) {
  const size = output.width * output.height, channels = config.output_nc;
  const image = new ImageData(output.width, output.height);
  for (let p = 0; p < size; p++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(Math.fround(values[channels * p + (channels === 1 ? 0 : c)] + 1) * 127.5);
      image.data[4 * p + c] = roundHalfEven(Math.min(255, Math.max(0, v)));
    }
    image.data[4 * p + 3] = 255;
  }
  output.getContext("2d").putImageData(image, 0, 0);
}

async function translate() {
  const accelerator = $("accelerator").value;
  const size = config.image_size;
  let tensor, results;
  try {
    const compiled = await model(accelerator);
    tensor = new Tensor(modelInput(), [1, size, size, config.input_nc]);
    const start = performance.now();
    results = await compiled.run([tensor]);
    const values = results[0].toTypedArray();
    const milliseconds = performance.now() - start;
    showOutput(values);
    status.dataset.milliseconds = milliseconds.toFixed(2);
    say(`Translated by ${config.model.file} (${config.model.variant}) in ${milliseconds.toFixed(1)} ms ` +
        `on ${ACCELERATORS[accelerator]}, in this browser.`);
  } catch (error) {
    say(`error: ${error.message || error}`, true);
  } finally {
    tensor?.delete();
    for (const result of results ?? []) result.delete();
  }
}

// ------------------------------------------------------------------ set-up

function describe() {
  const m = config.model;
  $("model-name").textContent = `· ${m.name}, version ${m.version}`;
  $("model-info").textContent =
    `Runs ${m.file} (${m.precision}; ${(m.size_bytes / 2 ** 20).toFixed(2)} MiB; PSNR ${m.psnr_db_vs_saved_model} dB ` +
    `against the SavedModel; dropout off) at ${config.image_size}x${config.image_size}, ` +
    `${config.dataset ?? "unknown dataset"} ${config.direction ?? ""}, with ${config.runtime.package} ` +
    `${config.runtime.version} in this browser.`;
}

function setUpExamples() {
  $("examples-heading").hidden = !config.examples.length;
  for (const path of config.examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.append(Object.assign(document.createElement("img"), {src: path, alt: path}));
    button.addEventListener("click", async () => {
      await showImage(await (await fetch(path)).blob());
      await translate();
    });
    $("examples").append(button);
  }
}

async function main() {
  config = await (await fetch("page.json")).json();
  for (const canvas of [input, output]) canvas.width = canvas.height = config.image_size;
  describe();
  clearInput();
  setUpPalette();
  setUpDrawing();
  setUpExamples();
  $("accelerator").querySelector("[value=webgpu]").disabled = !isWebGPUSupported();
  $("clear").addEventListener("click", clearInput);
  $("translate").addEventListener("click", translate);
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    try {
      await showImage(file);
    } catch (error) {
      say(`error: ${file.name} is not an image this browser can decode (${error.message || error}).`, true);
      return;
    }
    await translate();
  });
  say("Loading the runtime and the model...");
  await model($("accelerator").value);
  $("translate").disabled = false;
  document.body.dataset.ready = "true";
  say(config.examples.length ? "Ready: draw on the input, upload an image or click an example."
    : "Ready: draw on the input or upload an image.");
}

main().catch((error) => say(`error: ${error.message || error}`, true));
