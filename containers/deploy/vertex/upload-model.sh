#!/usr/bin/env bash
# Uploads a model served by a hyperserve image to Vertex AI and deploys it to an endpoint; the
# same Model as vertex/model.json (the body of `POST .../models:upload` is {"model": <that>}).
# Push the image first: scripts/build-images.sh sklearn-cpu, then tag and push it to
# $REGION-docker.pkg.dev/$PROJECT/hyperserve/.
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/hyperserve/sklearn-cpu:0.1.0-1.9"

gcloud ai models upload --project="$PROJECT" --region="$REGION" --display-name=iris-sklearn \
  --artifact-uri="gs://$BUCKET/iris/" \
  --container-image-uri="$IMAGE" \
  --container-ports=8080 \
  --container-health-route=/health \
  --container-predict-route=/predict

MODEL=$(gcloud ai models list --project="$PROJECT" --region="$REGION" --filter=display_name=iris-sklearn \
        --format='value(name)' --limit=1)
ENDPOINT=$(gcloud ai endpoints create --project="$PROJECT" --region="$REGION" --display-name=iris \
           --format='value(name)')
gcloud ai endpoints deploy-model "$ENDPOINT" --project="$PROJECT" --region="$REGION" --model="$MODEL" \
  --display-name=iris-sklearn --machine-type=n1-standard-2 --min-replica-count=1
