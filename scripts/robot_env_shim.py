#!/usr/bin/env python3
"""Serve a SimplerEnv or LIBERO task over the HTTP environment protocol of `magma agent robot`.

Protocol (JSON over HTTP POST, images as json-numpy uint8 [H, W, 3]):
  POST /reset {"seed": int, "task": str | null}
       -> {"observation": {"image": <json-numpy>}, "instruction": str}
  POST /step  {"action": [7 floats]}
       -> {"observation": {"image": ...}, "reward": float, "done": bool, "success": bool}

The action is what `magma serve`'s /act session returns as `env_action` after the embodiment's
post-processing: SimplerEnv `world_vector(3) + rot_axangle(3) + gripper(1)`, LIBERO the 7-vector.

Examples (needs the simulator installed; nothing here downloads anything):
  python scripts/robot_env_shim.py simpler --task google_robot_pick_coke_can --port 8100
  python scripts/robot_env_shim.py libero --suite libero_goal --task-id 0 --port 8100
  magma agent robot --endpoint http://127.0.0.1:8000 --env http://127.0.0.1:8100 \
      --policy-setup google_robot --episodes 10 --seed 0 --out runs/coke

Only the standard library and numpy are needed besides the simulator.
"""

import argparse
import base64
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def encode_image(image):
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
    return {
        "__numpy__": base64.b64encode(image.tobytes()).decode("ascii"),
        "dtype": "|u1",
        "shape": list(image.shape),
    }


class SimplerEnvTask:
    """A SimplerEnv task (`simpler_env.make`)."""

    def __init__(self, task):
        import simpler_env
        from simpler_env.utils.env.observation_utils import get_image_from_maniskill2_obs_dict

        self.env = simpler_env.make(task)
        self.image_of = lambda obs: get_image_from_maniskill2_obs_dict(self.env, obs)
        self.instruction = ""

    def reset(self, seed):
        obs, _ = self.env.reset(seed=seed)
        self.instruction = self.env.get_language_instruction()
        return self.image_of(obs), self.instruction

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        obs, reward, success, truncated, info = self.env.step(action)
        done = bool(success or truncated)
        return self.image_of(obs), float(reward), done, bool(success)


class LiberoTask:
    """One LIBERO task (`OffScreenRenderEnv`, 256x256, the reference's 180-degree image flip)."""

    def __init__(self, suite, task_id):
        import os

        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv

        task_suite = benchmark.get_benchmark_dict()[suite]()
        self.task = task_suite.get_task(task_id)
        self.initial_states = task_suite.get_task_init_states(task_id)
        bddl = os.path.join(get_libero_path("bddl_files"), self.task.problem_folder, self.task.bddl_file)
        self.env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
        self.instruction = self.task.language

    def reset(self, seed):
        self.env.seed(seed)
        self.env.reset()
        obs = self.env.set_init_state(self.initial_states[seed % len(self.initial_states)])
        return obs["agentview_image"][::-1, ::-1], self.instruction

    def step(self, action):
        obs, reward, done, _ = self.env.step(np.asarray(action, dtype=np.float64))
        return obs["agentview_image"][::-1, ::-1], float(reward), bool(done), bool(done)


def serve(task, port):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/reset":
                    image, instruction = task.reset(int(request.get("seed") or 0))
                    self._answer(200, {"observation": {"image": encode_image(image)}, "instruction": instruction})
                elif self.path == "/step":
                    image, reward, done, success = task.step(request["action"])
                    self._answer(200, {"observation": {"image": encode_image(image)}, "reward": reward,
                                       "done": done, "success": success})
                else:
                    self._answer(404, {"error": f"unknown path {self.path}; use /reset or /step"})
            except Exception as e:  # the client logs the message as the episode's error
                self._answer(500, {"error": f"{type(e).__name__}: {e}"})

    print(f"environment on http://127.0.0.1:{port} (POST /reset, /step)")
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="sim", required=True)
    simpler = sub.add_parser("simpler", help="a SimplerEnv task")
    simpler.add_argument("--task", required=True, help="e.g. google_robot_pick_coke_can, widowx_spoon_on_towel")
    libero = sub.add_parser("libero", help="a LIBERO task")
    libero.add_argument("--suite", default="libero_goal")
    libero.add_argument("--task-id", type=int, default=0)
    for p in (simpler, libero):
        p.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    task = SimplerEnvTask(args.task) if args.sim == "simpler" else LiberoTask(args.suite, args.task_id)
    serve(task, args.port)


if __name__ == "__main__":
    main()
