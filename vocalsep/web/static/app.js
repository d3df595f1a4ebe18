// The vocalsep page: upload a song, follow its job, then compare and download its tracks.
// One set of transport controls drives three <audio> elements (mix, vocals, instrumental);
// only the selected one plays, and switching hands over the position, so people hear the
// same moment of each track. The API is described in the README ("The web page").
"use strict";

const LABELS = { mix: "Mix", vocals: "Vocals", accompaniment: "Instrumental" };
const RECENT_KEY = "vocalsep.recent";
const RECENT_KEPT = 10;
const POLL_MS = 500;
const RESTART_WAIT_MS = 120000;

const $ = (id) => document.getElementById(id);
let maxUploadBytes = Infinity;
let followed = null; // id of the job whose status is shown
let player = null; // { audios: {track: HTMLAudioElement}, active: track }

function megabytes(bytes) {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}

function clock(seconds) {
  if (!Number.isFinite(seconds)) return "0:00";
  const whole = Math.floor(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function showStatus(text, fraction) {
  $("status").hidden = false;
  $("status-text").textContent = text;
  const bar = $("status-bar");
  if (fraction === null) bar.removeAttribute("value");
  else bar.value = fraction;
}

function hideStatus() {
  $("status").hidden = true;
}

// Songs of this browser session, newest first: [{id, name}].
function recentSongs() {
  try {
    return JSON.parse(sessionStorage.getItem(RECENT_KEY)) || [];
  } catch {
    return [];
  }
}

function remember(job) {
  const songs = [{ id: job.id, name: job.name }, ...recentSongs().filter((s) => s.id !== job.id)];
  sessionStorage.setItem(RECENT_KEY, JSON.stringify(songs.slice(0, RECENT_KEPT)));
}

function forget(id) {
  sessionStorage.setItem(RECENT_KEY, JSON.stringify(recentSongs().filter((s) => s.id !== id)));
}

async function showRecent() {
  const songs = recentSongs();
  const list = $("recent-list");
  list.replaceChildren();
  for (const song of songs) {
    const response = await fetch(`api/jobs/${song.id}`);
    if (response.status === 404) {
      forget(song.id); // removed after its age
      continue;
    }
    const job = await response.json();
    const item = document.createElement("li");
    const link = document.createElement("button");
    link.type = "button";
    link.className = "link";
    link.textContent = job.name;
    link.addEventListener("click", () => follow(job.id));
    const state = document.createElement("span");
    state.className = `state ${job.state}`;
    state.textContent = job.state;
    item.append(link, state);
    list.append(item);
  }
  $("recent").hidden = list.children.length === 0;
}

function upload(file) {
  clearError();
  if (file.size > maxUploadBytes) {
    showError(`${file.name}: too large: the limit is ${megabytes(maxUploadBytes)} MB`);
    return;
  }
  const form = new FormData();
  form.append("file", file);
  const request = new XMLHttpRequest();
  request.open("POST", "api/jobs");
  request.upload.addEventListener("progress", (event) => {
    showStatus(`Uploading ${file.name}`, event.lengthComputable ? event.loaded / event.total : null);
  });
  request.addEventListener("load", () => {
    let body;
    try {
      body = JSON.parse(request.responseText);
    } catch {
      body = { error: `${file.name}: the server answered ${request.status}` };
    }
    if (request.status !== 202) {
      hideStatus();
      showError(body.error);
      return;
    }
    remember(body);
    follow(body.id);
  });
  request.addEventListener("error", () => {
    hideStatus();
    showError(`${file.name}: the upload failed: the connection was closed`);
  });
  showStatus(`Uploading ${file.name}`, 0);
  request.send(form);
}

async function follow(id) {
  followed = id;
  clearError();
  let unanswered = 0; // polls in a row without an answer: a restart keeps the song, so wait
  while (followed === id) {
    let response, job;
    try {
      response = await fetch(`api/jobs/${id}`);
      job = await response.json();
      unanswered = 0;
    } catch {
      unanswered += 1;
      if (unanswered * POLL_MS < RESTART_WAIT_MS) {
        showStatus("The server is restarting; your song keeps its place", null);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      hideStatus();
      showError("The server does not answer: reload the page to see your song again.");
      return;
    }
    if (followed !== id) return;
    if (!response.ok) {
      hideStatus();
      showError(job.error);
      forget(id);
      showRecent();
      return;
    }
    if (job.state === "queued") {
      const ahead = job.ahead === 1 ? "1 song" : `${job.ahead} songs`;
      showStatus(`${job.name}: waiting, ${ahead} ahead in the queue`, null);
    } else if (job.state === "running") {
      const total = job.seconds_total;
      if (total && job.seconds_done >= total) {
        showStatus(`${job.name}: preparing the player`, null);
      } else if (total) {
        const percent = Math.floor((100 * job.seconds_done) / total);
        showStatus(
          `${job.name}: separating, ${percent}% (${clock(job.seconds_done)} of ${clock(total)})`,
          job.seconds_done / total,
        );
      } else {
        showStatus(`${job.name}: separating, ${clock(job.seconds_done)} done`, null);
      }
    } else {
      hideStatus();
      if (job.state === "failed") showError(job.error);
      else showResult(job);
      showRecent();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function active() {
  return player.audios[player.active];
}

function select(track) {
  if (!player || !(track in player.audios) || track === player.active) return;
  const from = active();
  const to = player.audios[track];
  const playing = !from.paused;
  to.currentTime = from.currentTime;
  from.pause();
  player.active = track;
  if (playing) to.play();
  showSelected();
}

function showSelected() {
  for (const button of $("switch").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.track === player.active));
    button.hidden = !(button.dataset.track in player.audios);
  }
  for (const figure of $("tracks").querySelectorAll("figure")) {
    figure.classList.toggle("active", figure.dataset.track === player.active);
  }
  showPosition();
}

function togglePlay() {
  if (!player) return;
  if (active().paused) active().play();
  else active().pause();
}

function seek(seconds) {
  if (player) active().currentTime = seconds;
  showPosition();
}

function showPosition() {
  if (!player) return;
  const audio = active();
  const duration = Number.isFinite(audio.duration) ? audio.duration : 0;
  $("seek").max = duration || 1;
  $("seek").value = audio.currentTime;
  $("time").textContent = `${clock(audio.currentTime)} / ${clock(duration)}`;
  $("play").textContent = audio.paused ? "Play" : "Pause";
  $("play").setAttribute("aria-label", audio.paused ? "Play" : "Pause");
  const fraction = duration ? audio.currentTime / duration : 0;
  for (const head of $("tracks").querySelectorAll(".playhead")) {
    head.style.left = `${100 * fraction}%`;
  }
}

function trackFigure(track, urls) {
  const figure = document.createElement("figure");
  figure.dataset.track = track;
  const caption = document.createElement("figcaption");
  const choose = document.createElement("button");
  choose.type = "button";
  choose.className = "link";
  choose.textContent = LABELS[track] || track;
  choose.addEventListener("click", () => select(track));
  const downloads = document.createElement("span");
  downloads.className = "downloads";
  for (const format of ["wav", "flac", "mp3"]) {
    const link = document.createElement("a");
    link.href = urls[format];
    link.download = "";
    link.className = "button small";
    link.dataset.format = format;
    link.textContent = format;
    link.title = `Download ${LABELS[track] || track} as ${format}`;
    downloads.append(link);
  }
  caption.append(choose, downloads);
  const picture = document.createElement("div");
  picture.className = "spectrogram";
  const image = document.createElement("img");
  image.src = urls.spectrogram;
  image.alt = `Spectrogram of the ${(LABELS[track] || track).toLowerCase()}`;
  const head = document.createElement("div");
  head.className = "playhead";
  picture.append(image, head);
  // A click on a spectrogram plays that track from that moment.
  picture.addEventListener("click", (event) => {
    const box = picture.getBoundingClientRect();
    select(track);
    const duration = active().duration;
    if (Number.isFinite(duration)) seek(((event.clientX - box.left) / box.width) * duration);
  });
  figure.append(caption, picture);
  return figure;
}

function showResult(job) {
  if (player) for (const audio of Object.values(player.audios)) audio.pause();
  const audios = {};
  const players = $("players");
  players.replaceChildren();
  $("tracks").replaceChildren();
  for (const [track, urls] of Object.entries(job.tracks)) {
    const audio = document.createElement("audio");
    audio.preload = "auto";
    audio.src = urls.wav;
    audio.dataset.track = track;
    for (const event of ["timeupdate", "play", "pause", "ended", "loadedmetadata", "seeked"]) {
      audio.addEventListener(event, () => player && player.audios[track] === audio && showPosition());
    }
    players.append(audio);
    audios[track] = audio;
    $("tracks").append(trackFigure(track, urls));
  }
  player = { audios, active: "mix" };
  showSelected();
  $("song-name").textContent = job.name;
  $("result").hidden = false;
}

function setUp() {
  fetch("api")
    .then((response) => response.json())
    .then((info) => {
      maxUploadBytes = info.max_upload_bytes;
      $("limits").textContent +=
        ` Up to ${megabytes(maxUploadBytes)} MB. Downloads as ${info.formats.join(", ")}.`;
    });
  $("file").addEventListener("change", () => {
    if ($("file").files.length) upload($("file").files[0]);
    $("file").value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
  });
  for (const button of $("switch").querySelectorAll("button")) {
    button.addEventListener("click", () => select(button.dataset.track));
  }
  $("play").addEventListener("click", togglePlay);
  $("seek").addEventListener("input", () => seek(Number($("seek").value)));
  document.addEventListener("keydown", (event) => {
    if (!player || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey) return;
    const tracks = { 1: "mix", 2: "vocals", 3: "accompaniment" };
    if (event.key in tracks) select(tracks[event.key]);
    else if (event.key === " ") {
      event.preventDefault();
      togglePlay();
    }
  });
  showRecent();
}

setUp();
