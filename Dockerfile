# Build stage: a compiler and the build-time-only tools compile the Cython extensions in place (docs/compiled-core.md).
# `pip install -e .` fetches setuptools and Cython into pip's isolated build environment, exactly as `make install`
# does; neither reaches the runtime image.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && python -c "import apps.engine.market._book, apps.engine.execution._fillmodel, apps.engine.estimators._estimators, apps.engine.execution._paper, apps.engine.simulation._backtest, apps.engine.quoting._depthprice, apps.engine.quoting._quote, apps.engine._core, apps.engine.risk._session, apps.engine.accounting._pnl"

FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# the source tree with the built extensions beside their .pyx (the app runs from /app, so they import from here)
COPY --from=build /app /app
# fail the image build, not the first backtest, when an extension is missing or would fall back to Python
# (the fill model is C++: its libstdc++ is in the slim image already, apt depends on it)
RUN python -c "from apps.engine.market import book; assert book.BOOK_COMPILED, 'compiled book missing'" \
    && python -c "from apps.engine.execution import fillmodel as f; assert f.FILLMODEL_COMPILED, 'fill model missing'" \
    && python -c "from apps.engine.estimators import sigma; assert sigma.ESTIMATORS_COMPILED, 'estimators missing'" \
    && python -c "from apps.engine.execution import paper; assert paper.PAPER_COMPILED, 'paper venue missing'" \
    && python -c "from apps.engine.simulation import backtest; assert backtest.DRIVER_COMPILED, 'driver missing'" \
    && python -c "from apps.engine.quoting import quoter; assert quoter.DEPTHPRICE_COMPILED, 'depth pricing missing'" \
    && python -c "from apps.engine.quoting import quoter; assert quoter.QUOTE_COMPILED, 'quoter missing'" \
    && python -c "from apps.engine import core; assert core.CORE_COMPILED, 'strategy core missing'" \
    && python -c "from apps.engine.risk import session; assert session.SESSION_COMPILED, 'risk session missing'" \
    && python -c "from apps.engine.accounting import pnl; assert pnl.PNL_COMPILED, 'ledger missing'"
EXPOSE 8000
CMD ["python", "-m", "daphne", "-b", "0.0.0.0", "-p", "8000", "mmweb.asgi:application"]
