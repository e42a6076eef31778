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
    this.pending = false; // a new run is being loaded
    this.looping = false; // a loop is stepping (or awaiting a step of) the run
    $(ids.pause).addEventListener('click', () => this.pauseOrResume());
    $(ids.stop).addEventListener('click', () => this.stop());
  }

  // A run is loaded (running or paused) or being loaded.
  get active() {
    return this.remote !== null || this.pending;
  }

  // Stepping, or loading a new run: Start must wait.
  get busy() {
    return this.running || this.pending;
  }

  // A view is loading a new run: a paused one is abandoned now (so Resume cannot step it while
  // the new one loads), and the buttons wait until `begin` or `notLoaded`.
  loading() {
    this.remote?.free();
    this.remote = null;
    this.running = false;
    this.stopAsked = false;
    this.pending = true;
    this.state = 'loading';
    for (const id of Object.values(this.ids)) $(id).disabled = true;
  }

  // The run being loaded could not be: Start may be pressed again.
  notLoaded() {
    this.pending = false;
    this.state = 'failed';
    $(this.ids.start).disabled = false;
  }

  // Starts stepping `remote`, just loaded.
  begin(remote) {
    this.pending = false;
    this.remote?.free();
    this.remote = remote;
    this.stopAsked = false;
    $(this.ids.stop).disabled = false;
    this.loop();
  }

  set state(value) {
    document.body.dataset[this.key] = value;
  }

  // Steps until the run completes, is paused or stopped. One loop per run: a loop whose run was
  // replaced (or freed) ends without touching the page.
  async loop() {
    if (this.looping) return;
    const remote = this.remote;
    this.looping = true;
    this.running = true;
    this.state = 'running';
    $(this.ids.pause).textContent = 'Pause';
    $(this.ids.pause).disabled = false;
    $(this.ids.start).disabled = true;
    try {
      while (this.running) {
        const complete = await this.stepOnce(remote);
        if (this.remote !== remote) return;
        if (complete) {
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
      if (this.remote === remote) this.end('failed', e);
    } finally {
      this.looping = false;
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
