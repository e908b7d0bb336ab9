// Choosing the camera, microphone and speaker, before joining and during the meeting: the
// <select>s list what enumerateDevices() finds (again on `devicechange`), the choice is
// remembered in localStorage and applied with getUserMedia + replaceTrack (camera, microphone)
// or setSinkId (speaker, on every <audio> of the page).

export const KINDS = Object.freeze(['videoinput', 'audioinput', 'audiooutput']);
const STORAGE = { videoinput: 'parley.camera', audioinput: 'parley.microphone', audiooutput: 'parley.speaker' };

/** The remembered device id of a kind ('' = the browser's default). */
export function rememberedDevice(kind, storage = globalThis.localStorage) {
  try {
    return storage?.getItem(STORAGE[kind]) ?? '';
  } catch {
    return '';
  }
}

export function rememberDevice(kind, deviceId, storage = globalThis.localStorage) {
  try {
    storage?.setItem(STORAGE[kind], deviceId ?? '');
  } catch {
    // private mode: not remembered
  }
}

/** The device id to use: the remembered one while it is plugged in, else the default (''). */
export function chooseDevice(devices, kind, remembered) {
  return remembered && devices.some((d) => d.kind === kind && d.deviceId === remembered) ? remembered : '';
}

/** getUserMedia constraints for one kind on one device ('' = default). */
export function mediaConstraints(kind, deviceId) {
  const device = deviceId ? { deviceId: { exact: deviceId } } : {};
  if (kind === 'videoinput') return { video: { width: 1280, height: 720, ...device } };
  return { audio: deviceId ? device : true };
}

/** Options for a <select> of `kind`: [{value, label}], numbered when the browser hides labels. */
export function deviceOptions(devices, kind) {
  const names = { videoinput: 'Camera', audioinput: 'Microphone', audiooutput: 'Speaker' };
  return devices
    .filter((d) => d.kind === kind && d.deviceId && d.deviceId !== 'default')
    .map((d, i) => ({ value: d.deviceId, label: d.label || `${names[kind]} ${i + 1}` }));
}

/**
 * Keeps the <select>s (`selects`: kind -> element, any may be missing) in step with the devices
 * present; `onChoose(kind, deviceId)` is called when the user picks one.
 */
export class DevicePicker {
  constructor(selects, onChoose) {
    this.selects = selects;
    this.onChoose = onChoose;
    this.devices = [];
    for (const kind of KINDS) {
      const el = selects[kind];
      el?.addEventListener('change', () => {
        rememberDevice(kind, el.value);
        this.onChoose(kind, el.value);
      });
    }
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this.refresh());
  }

  async refresh() {
    if (!navigator.mediaDevices?.enumerateDevices) return [];
    this.devices = await navigator.mediaDevices.enumerateDevices();
    for (const kind of KINDS) {
      const el = this.selects[kind];
      if (!el) continue;
      const options = deviceOptions(this.devices, kind);
      const chosen = chooseDevice(this.devices, kind, rememberedDevice(kind));
      el.replaceChildren(new Option('Default', ''), ...options.map((o) => new Option(o.label, o.value)));
      el.value = chosen;
      el.disabled = kind === 'audiooutput' && !('setSinkId' in HTMLMediaElement.prototype);
    }
    return this.devices;
  }

  /** The device in use for `kind` ('' = default). */
  current(kind) {
    return chooseDevice(this.devices, kind, rememberedDevice(kind));
  }
}
