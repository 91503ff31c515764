"""Stage backbone: the frozen backbone as extract runs it, converted once -> models/backbone/
(OpenVINO IR with extract.engine openvino; with tensorflow, only its description)."""
import time
from pathlib import Path

from keras_bottleneck import engines, params as params_file
from keras_bottleneck.atomic import atomic_path, write_json
from keras_bottleneck.errors import run_stage

BACKBONE = Path("models/backbone")


def main():
    started = time.perf_counter()
    params = params_file.load()
    with atomic_path(BACKBONE, directory=True) as tmp:
        description = engines.write_backbone(params.backbone, params.extract,
                                             params.prepare.img_size, tmp)
    write_json("metrics/backbone.json", {"engine": description["engine"],
                                         "seconds": round(time.perf_counter() - started, 3)})
    print(f"backbone: {description['backbone']} at {description['img_size']}px for the "
          f"{description['engine']} engine (pool: {description['pool']}) -> {BACKBONE}/")


if __name__ == "__main__":
    run_stage(main)
