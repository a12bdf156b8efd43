// Stylesheets are bundled by esbuild; noVNC ships no type declarations.
declare module "*.css";
declare module "@novnc/novnc";
