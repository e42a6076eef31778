// A run the page drives one step at a time (a STaR run, a lesson): each step is one request to
// the engine, so Pause simply stops asking, Resume asks again and Stop ends the run after the
// step in flight. Shared by the views that train in the engine. The run's state is mirrored on
// `document.body.dataset[key]` ('running', 'paused', 'finished', 'stopped', 'failed') for the
// browser tests.
import { $, sleep } from './common.js';

export class StepRun {
  // `ids`: the Start, Pause and Stop buttons' ids. `step(remote)` does one step and resolves to
  // true once the run is complete; `ended(state, error)` hears how a run ended (after its
  // remote was freed).
  constructor({ key, ids, step, ended }) {
    Object.assign(this, { key, ids, stepOnce: step, ended });
    this.remote = null;
    this.running = false;
    this.stopAsked = false;
    $(ids.pause).addEventListener('click', () => this.pauseOrResume());
    $(ids.stop).addEventListener('click', () => this.stop());
  }

  get active() {
    return this.remote !== null;
  }

  // Starts stepping `remote` (a paused run is abandoned for it).
  begin(remote) {
    this.remote?.free();
    this.remote = remote;
    this.stopAsked = false;
    $(this.ids.stop).disabled = false;
    this.loop();
  }

  set state(value) {
    document.body.dataset[this.key] = value;
  }

  async loop() {
    this.running = true;
    this.state = 'running';
    $(this.ids.pause).textContent = 'Pause';
    $(this.ids.pause).disabled = false;
    $(this.ids.start).disabled = true;
    try {
      while (this.running) {
        if (await this.stepOnce(this.remote)) {
          this.end('finished');
          return;
        }
        await sleep(0);
      }
      if (this.stopAsked) {
        this.end('stopped');
        return;
      }
      this.state = 'paused';
      $(this.ids.pause).textContent = 'Resume';
      $(this.ids.pause).disabled = false;
      $(this.ids.start).disabled = false; // a paused run may be abandoned for a new one
    } catch (e) {
      this.end('failed', e);
    }
  }

  end(state, error) {
    this.remote?.free();
    this.remote = null;
    this.running = false;
    this.stopAsked = false;
    this.state = state;
    $(this.ids.pause).textContent = 'Pause';
    $(this.ids.pause).disabled = true;
    $(this.ids.stop).disabled = true;
    $(this.ids.start).disabled = false;
    this.ended(state, error);
  }

  pauseOrResume() {
    if (!this.remote) return;
    if (this.running) {
      this.running = false; // the loop stops after the step in flight
      $(this.ids.pause).disabled = true;
      $(this.ids.pause).textContent = 'Pausing…';
    } else {
      this.loop();
    }
  }

  // Stop: the run ends after the step in flight (at once when paused).
  stop() {
    if (!this.remote) return;
    $(this.ids.stop).disabled = true;
    if (this.running) {
      this.stopAsked = true;
      this.running = false;
      $(this.ids.pause).disabled = true;
    } else {
      this.end('stopped');
    }
  }
}
