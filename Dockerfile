# syntax=docker/dockerfile:1
# tritonkit GPU target: TensorRT plans served by NVIDIA's tritonserver.
#
# Both stages come from ONE NGC release, because a TensorRT plan only loads in the TensorRT version
# that built it. 25.10 carries the August 2025 Triton security fixes (first in 25.07). Keep
# TRITON_RELEASE equal to tritonkit.build_engines.compat.DEFAULT_RELEASE.
#
#   plan-builder  nvcr.io/nvidia/tensorrt:<release>-py3 + tritonkit. Building a plan needs the GPU
#                 it is built for and `docker build` has no GPU, so this stage is *run*:
#                   docker build --target plan-builder -t tritonkit-plan-builder:25.10 .
#                   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work \
#                       tritonkit-plan-builder:25.10 build --model resnet50 --onnx build/onnx/resnet50.onnx \
#                       --precision fp16 --max-batch 8 --out build/plans
#                 It writes <model>_<precision>.plan and its .plan.json sidecar (TensorRT version, GPU).
#   serve         nvcr.io/nvidia/tritonserver:<release>-py3 with the model repository copied in,
#                 run as the image's non-root user triton-server (uid 1000):
#                   docker build --target serve --build-arg MODEL_REPOSITORY=model_repository \
#                       -t tritonkit-serve:25.10 .
#                 It publishes on 127.0.0.1 only; the production profile (the default of the printed
#                 commands) replaces the CMD to restrict APIs to the key in $TRITONKIT_API_KEY:
#                   docker run --rm --gpus all -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -e TRITONKIT_API_KEY \
#                       tritonkit-serve:25.10 sh -c 'exec tritonserver "$@" \
#                       "--http-restricted-api=model-repository,shared-memory,logging,trace:tritonkit-api-key=${TRITONKIT_API_KEY}" \
#                       "--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:tritonkit-api-key=${TRITONKIT_API_KEY}"' \
#                       tritonserver --model-repository=/models --model-control-mode=none --strict-readiness=true \
#                       --exit-on-error=true --disable-auto-complete-config --metrics-config=summary_latencies=true \
#                       --metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001 --exit-timeout-secs=30
# tritonkit.serve.docker.docker_commands() returns these commands for any release and repository.
# Metrics (8002) are not published (the dev profile publishes them on 127.0.0.1 when asked).
# TensorRT 11 (tritonserver 26.06 and later) builds strongly typed: the plan-builder builds int8
# from the QDQ ONNX and fp16 only from an fp16 ONNX (tritonkit.build_engines.flags).
# Both stages keep NGC's entrypoint (/opt/nvidia/nvidia_entrypoint.sh: it sources
# /opt/nvidia/entrypoint.d/ then runs the command; triton-inference-server/server build.py keeps the
# base image's for GPU images): the plan-builder puts tritonkit after it instead of replacing it.

ARG TRITON_RELEASE=25.10

FROM nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3 AS plan-builder
WORKDIR /opt/tritonkit
COPY pyproject.toml README.md ./
COPY tritonkit ./tritonkit
# The image's python already has TensorRT's bindings; tritonkit goes beside them (no venv, so
# `import tensorrt` keeps working); dependency versions come from pyproject.toml.
RUN python3 -m pip install --no-cache-dir --break-system-packages . \
    && python3 -c "import tensorrt, tritonkit; print('TensorRT', tensorrt.__version__)" \
    && useradd --create-home --shell /usr/sbin/nologin tritonkit
USER tritonkit
WORKDIR /work
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "tritonkit"]
CMD ["build", "--help"]

FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3 AS serve
ARG MODEL_REPOSITORY=model_repository
# What tritonkit's python backends import beyond the image's numpy (the image installs numpy for its
# python backend, which runs the image's python3): Pillow and OpenCV for server-side preprocessing,
# onnxruntime for cpu-target models. tests/test_dockerfile.py collects the imports of a repository with
# every chain tritonkit writes and checks this list against them. Versions as tested with tritonkit.
RUN python3 -m pip install --no-cache-dir --break-system-packages \
        Pillow==11.3.0 opencv-python-headless==4.11.0.86 onnxruntime==1.20.1 \
    && python3 -c "import PIL.Image, cv2, onnxruntime"
# Root-owned and read-only for the server user: the running server cannot alter its models.
COPY ${MODEL_REPOSITORY} /models
USER triton-server
EXPOSE 8000 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--strict-readiness=true", "--exit-on-error=true", "--disable-auto-complete-config", "--metrics-config=summary_latencies=true", "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001"]
